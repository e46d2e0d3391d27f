"""`healthflow bench`: the end-to-end benchmark (BENCHMARKS.md). Phases, in the order they run:"""

PHASES = (
    "registrations",
    "vitals-http",
    "vitals-mqtt",
    "overload",
    "latency",
    "dashboard",
    "baselines",
)
