"""How a run looks on a terminal: Rich progress while it runs, one table per phase at the end."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from healthflow.bench.counters import BATCHES


class RichProgress:
    """The `Progress` of a run drawn with Rich: a bar per phase, notes printed above it."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._bars = Progress(
            TextColumn("[bold]{task.fields[phase]:<14}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        self._bars.stop()

    def phase(self, name: str, total_s: float | None) -> None:
        self._finish()
        self._task = self._bars.add_task("", total=total_s, phase=name)

    def update(self, detail: str, done_s: float | None = None) -> None:
        if self._task is not None:
            self._bars.update(self._task, description=detail, completed=done_s)

    def note(self, text: str) -> None:
        self._console.log(text)

    def _finish(self) -> None:
        if self._task is not None:
            task = self._bars.tasks[-1]
            if task.total is not None:
                self._bars.update(self._task, completed=task.total)
            self._bars.stop_task(self._task)
            self._task = None


def _ms(p: dict[str, Any] | None) -> str:
    if not p or not p.get("n"):
        return "-"
    return f"p50 {p['p50']} / p95 {p['p95']} / p99 {p['p99']} (n={p['n']:,})"


def _batches(means: dict[str, float | None]) -> str:
    """Items per batch of each stage, in `BATCHES` order ("-": none handled)."""
    return " / ".join(_n(means.get(stage)) for stage in BATCHES)


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _by_role(roles: dict[str, dict[str, float]], figure: str) -> str:
    return ", ".join(f"{role} {_n(one.get(figure))}" for role, one in roles.items())


def tables(result: dict[str, Any]) -> list[Table]:
    """One table per phase that ran, then the baselines and the ratios."""
    phases = {k: v for k, v in result["phases"].items() if "error" not in v}
    made: list[Table] = []

    def table(title: str, rows: list[tuple[str, Any]]) -> None:
        t = Table(title=title, title_justify="left")
        t.add_column("figure")
        t.add_column("value", justify="right")
        for name, value in rows:
            t.add_row(name, value if isinstance(value, str) else _n(value))
        made.append(t)

    def server_rows(r: dict[str, Any]) -> list[tuple[str, Any]]:
        s = r.get("server", {})
        g = r.get("load_generator", {})
        rows: list[tuple[str, Any]] = [
            ("server peak RSS (MB)", s.get("peak_rss_mb")),
            ("server CPU (cores)", s.get("cpu_cores")),
        ]
        if roles := s.get("roles"):
            rows.append(("  by role (cores)", _by_role(roles, "cpu_cores")))
            rows.append(("  by role, peak RSS (MB)", _by_role(roles, "peak_rss_mb")))
        return [*rows, ("load generator CPU (cores)", g.get("cpu_cores"))]

    if server := result.get("server"):
        rows: list[tuple[str, Any]] = [
            ("backend", result.get("backend", {}).get("name")),
            ("topology", server.get("topology", "all")),
            ("peak RSS, whole run (MB)", server.get("peak_rss_mb")),
            ("CPU, whole run (s)", server.get("cpu_s")),
        ]
        if roles := server.get("roles"):
            rows.append(("  by role (s)", _by_role(roles, "cpu_s")))
            rows.append(("  by role, peak RSS (MB)", _by_role(roles, "peak_rss_mb")))
        table("server under test", rows)

    if r := phases.get("registrations"):
        table(
            "registrations",
            [
                ("registrations/s", r["per_second"]),
                ("POST returned → PatientCreated ms", _ms(r["push_after_return_ms"])),
                ("POST sent → PatientCreated ms", _ms(r["push_after_send_ms"])),
                ("analytics caught up after load (s)", r["analytics_drain_after_load_s"]),
                *server_rows(r),
            ],
        )
    for name in ("vitals-http", "vitals-mqtt", "overload"):
        r = phases.get(name)
        if not r or r.get("skipped"):
            continue
        rows = [
            ("mode", r.get("mode", f"{r.get('offered_per_s')} readings/s offered")),
            *([("MQTT broker", r["broker"])] if "broker" in r else []),
            ("readings/s stored and scored", r["readings_per_s"]),
            ("  per second while busy: median", r["per_second_while_busy"]["median"]),
            ("accepted / processed", f"{r['accepted']:,} / {r['processed']:,}"),
            ("every accepted reading processed", "yes" if r["all_accepted_processed"] else "NO"),
            ("drain after load (s)", r["drain_after_load_s"]),
            (f"mean batch: {' / '.join(BATCHES)}", _batches(r.get("mean_batch", {}))),
        ]
        offered = r["offered"]
        if offered["pushed_back"] or name == "overload":
            rows.append(
                (
                    "pushed back (429/503) / with Retry-After",
                    f"{offered['pushed_back']:,} / {offered['pushed_back_with_retry_after']:,}",
                )
            )
        table(name, rows + server_rows(r))
    if (r := phases.get("latency")) and not r.get("skipped"):
        for title, one in (
            ("latency", r),
            ("latency, half the sustainable rate", r.get("half_sustainable")),
        ):
            if not one:
                continue
            d = one["deliveries"]
            vitals = f"{d['vitals_updated']:,} / {d['vitals_updated_ceiling']:,}"
            alerts = f"{d['alert_raised']:,} / {d['alert_raised_expected']:,}"
            table(
                title,
                [
                    ("offered readings/s", one["offered_per_s"]),
                    ("accepted / processed", f"{one['accepted']:,} / {one['processed']:,}"),
                    ("pushed back (429/503)", one["offered"]["pushed_back"]),
                    ("WebSocket clients connected", r["clients"]["connected"]),
                    (
                        "202 → request's first VitalsUpdated ms",
                        _ms(one["vitals_first_shown_ms"]),
                    ),
                    (
                        "… once every monitor has posted once",
                        _ms(one["vitals_first_shown_after_first_round_ms"]),
                    ),
                    (
                        "POST sent → request's first VitalsUpdated ms",
                        _ms(one["vitals_first_shown_from_send_ms"]),
                    ),
                    ("POST sent → 202 ms", _ms(one["offered"]["request_ms"])),
                    ("202 → VitalsUpdated, every update ms", _ms(one["vitals_every_update_ms"])),
                    ("202 → AlertRaised ms", _ms(one["alert_raised_ms"])),
                    (
                        "POST returned → PatientCreated ms",
                        _ms(one["patient_created_after_return_ms"]),
                    ),
                    ("VitalsUpdated delivered / ceiling", vitals),
                    ("AlertRaised delivered / expected", alerts),
                    (f"mean batch: {' / '.join(BATCHES)}", _batches(one.get("mean_batch", {}))),
                    ("client processes CPU (cores, whole phase)", r["clients"]["cpu_cores"]),
                    *server_rows(one),
                ],
            )
    if r := phases.get("dashboard"):
        table(
            "dashboard",
            [
                ("stored events", r["stored_events"]),
                ("seeding events/s", r["seeded"].get("events_per_s")),
                ("uncached ms", _ms(r["uncached_ms"])),
                ("steady (cache ≤ 5 s) ms", _ms(r["steady_ms"])),
            ],
        )
    if bare := result.get("baselines"):
        rows = []
        if s := bare.get("sqlite"):
            rows += [
                ("sqlite3 batched rows/s", s["batched_rows_per_s"]),
                ("sqlite3 transactions/s (2 inserts)", s["single_row_transactions_per_s"]),
            ]
        if s := bare.get("postgres"):
            rows += [
                ("asyncpg executemany rows/s", s["executemany_rows_per_s"]),
                ("asyncpg COPY rows/s", s["copy_rows_per_s"]),
                ("asyncpg transactions/s (2 inserts)", s["single_row_transactions_per_s"]),
            ]
        if s := bare.get("rabbitmq"):
            rows.append(("aio-pika publish→consume msgs/s", s["messages_per_s"]))
        if s := bare.get("websocket"):
            rows.append(("websockets broadcast ms", _ms(s["latency_ms"])))
        table("bare baselines (same run)", rows)
    failed = [(k, v["error"]) for k, v in result["phases"].items() if "error" in v]
    if failed:
        table("failed phases", failed)
    if result.get("ratios"):
        table("ratios", list(result["ratios"].items()))
    return made
