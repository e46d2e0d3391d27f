"""What rendering `/metrics` costs the server: everything, against only the samples the bench's
closed loops poll (`/metrics?name[]=...`, `healthflow.bench.counters.COUNTED`).

Fills the process's registry the way a served process fills it (`http_stack.py`'s telemetry and
registration requests, in process, with the pipeline behind them), then renders both ways
N times, three rounds; CPU milliseconds a render and the size of the text.

    .venv/bin/python benchmarks/metrics_scrape.py [N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import uvloop
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.registry import Collector

sys.path.insert(0, str(Path(__file__).parent))
import http_stack

from healthflow.bench.counters import COUNTED


def cost(registry: Collector, renders: int) -> float:
    started = time.process_time()
    for _ in range(renders):
        generate_latest(registry)
    return (time.process_time() - started) / renders * 1e3


if __name__ == "__main__":
    renders = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    uvloop.run(http_stack.main("telemetry", 2000, 16))
    uvloop.run(http_stack.main("register", 1000, 16))
    counted = REGISTRY.restricted_registry(COUNTED)
    for round_ in range(1, 4):
        print(
            f"round {round_}: everything {cost(REGISTRY, renders):.2f} ms "
            f"({len(generate_latest(REGISTRY)):,} bytes), "
            f"the polled samples {cost(counted, renders):.2f} ms "
            f"({len(generate_latest(counted)):,} bytes)",
            flush=True,
        )
