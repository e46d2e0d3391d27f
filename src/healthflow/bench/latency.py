"""Phase `latency`: from a reading accepted (HTTP 202) to a dashboard receiving its VitalsUpdated
(and AlertRaised for the deteriorating patients), and from `POST /api/patients` returning to
PatientCreated arriving, with `--clients` WebSocket clients connected.

Shape of the load: every monitor posts the readings it buffered every `latency_interval_s`
(`latency_rate * interval / devices` readings, evenly spaced in time), so the offered rate is
`latency_rate`. Each client is a ward board: it watches `alerts`, its ward and the ward's
patients, so a VitalsUpdated reaches the clients of its patient's ward and an AlertRaised every
client. 2 % of the patients (at least one) deteriorate into a high NEWS2 and raise alerts.

Not every reading is pushed: the monitor pushes a patient's newest reading of a worker batch,
and the hub coalesces VitalsUpdated to at most one per patient per
`HEALTHFLOW_HUB_VITALS_MIN_INTERVAL_S` (0.25 s; the first at once, the newest held until the
interval has passed). So latency is reported twice: from a request's 202 to the first
VitalsUpdated carrying one of its readings (when its data first shows: the pipeline's own
latency), and for every VitalsUpdated that arrived (including the hub's deliberate hold).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from healthflow.bench import counters
from healthflow.bench.context import ClientCpu, Context
from healthflow.bench.fleet import PATIENT_BODY, ward
from healthflow.bench.live import ClientReport, Dashboards
from healthflow.bench.load import HttpLoad
from healthflow.bench.stats import percentiles
from healthflow.bench.vitals import ensure_fleet

MAX_TOPICS = 256  # per connection (docs/realtime.md)


def client_topics(clients: int, wards: int, patients: list[tuple[str, str]]) -> list[list[str]]:
    """A ward board per client: `alerts`, its ward, and each monitored patient of the ward.

    The patient topics are there because VitalsUpdated names no ward (its data carries the
    patient, not the ward), so it reaches `patient:{id}` subscribers only.
    """
    by_ward: dict[str, list[str]] = {}
    for patient_id, name in patients:
        by_ward.setdefault(name, []).append(f"patient:{patient_id}")
    made = []
    for i in range(clients):
        name = ward(i, wards)
        made.append(["alerts", f"ward:{name}", *by_ward.get(name, [])][:MAX_TOPICS])
    return made


@dataclass
class _Pass:
    """One load at one rate, while the same clients stay connected."""

    name: str
    rate: float
    load: HttpLoad
    registrations: _Registrations
    deteriorating: int
    load_interval_s: float  # each monitor posts this often
    result: dict[str, Any] = field(default_factory=dict)


async def latency(ctx: Context, sustainable_per_s: float | None) -> dict[str, Any]:
    """The issue's rate (`latency_rate`) first; when the pipeline could not keep up with it, a
    second pass at half the sustainable rate shows the latency without the queueing an
    overloaded pipeline adds.

    Sustainable means for these requests: what the first pass processed per second while it
    was saturated (a monitor's few readings a request cost several times more per reading than
    the vitals-http phase's 1,000-reading batches, so half of that phase's rate still saturates
    the server). Without a saturated first pass, half the vitals-http rate stands in.
    """
    p = ctx.params
    fleet = await ensure_fleet(ctx)
    patients = [(d.patient_id, d.ward) for d in fleet.devices]
    topics = client_topics(p.clients, p.wards, patients)
    count = p.deteriorate if p.deteriorate is not None else max(1, len(fleet.devices) // 50)
    passes: list[_Pass] = []
    async with Dashboards(ctx.server.ws_url, topics, p.client_procs) as dashboards:
        ctx.progress.note(
            f"latency: {p.clients} WebSocket clients connected in {dashboards.connect_s:.1f} s "
            f"({p.client_procs} processes)"
        )
        name, rate = "target", p.latency_rate
        for i in range(2):
            # each pass its own deteriorating patients: an alert is raised once per episode
            deteriorating = fleet.deteriorate(
                count, ramp_s=max(1.0, p.duration_s * 0.5), first=i * count
            )
            passes.append(await _one_pass(ctx, name, rate, len(deteriorating)))
            sustainable = _sustained(passes[-1]) or sustainable_per_s
            if i > 0 or not sustainable or sustainable >= p.latency_rate:
                break
            name, rate = "half-sustainable", round(sustainable / 2, 1)
        report = await dashboards.report()
    # a receipt of another pass is that pass's, not unmatched
    known = {key for ps in passes for key in ps.load.tally.accepted_at}
    known_patients = {pid for ps in passes for pid in ps.registrations.returned}
    ward_of = {d.patient_id: d.ward for d in fleet.devices}
    for ps in passes:
        ps.result |= _analyse(report, ps, topics, ward_of, known, known_patients)
    first = passes[0].result
    first["clients"] = report.to_dict() | {"processes": p.client_procs, "count": p.clients}
    first["connect_s"] = round(dashboards.connect_s, 1)
    if len(passes) > 1:
        first["half_sustainable"] = passes[1].result
    return first


async def _one_pass(ctx: Context, name: str, rate: float, deteriorating: int) -> _Pass:
    p = ctx.params
    fleet = ctx.fleet
    assert fleet is not None
    batch = max(1, round(rate * p.latency_interval_s / len(fleet.devices)))
    step_ms = max(1, int(p.latency_interval_s * 1000 / batch))
    ctx.progress.note(
        f"latency ({name}): {rate:g} readings/s as {len(fleet.devices)} monitors posting "
        f"{batch} readings every {p.latency_interval_s:g} s"
    )
    before = await counters.read(ctx.metrics)
    alerts_before = await _alerts_raised(ctx)
    window = ctx.server.window()
    cpu = ClientCpu()
    load = HttpLoad(ctx.requests, fleet, batch, record_latency=True, step_ms=step_ms)
    registrations = _Registrations(ctx)
    ctx.progress.phase(f"latency {name}", p.duration_s)
    started = time.perf_counter()
    ticker = asyncio.create_task(_tick(ctx, load, started))
    try:
        load_s, _ = await asyncio.gather(
            load.at_rate(
                readings_per_s=rate, duration_s=p.duration_s, max_in_flight=max(64, p.senders * 16)
            ),
            registrations.run(p.registration_rate, p.duration_s),
        )
        load_ended = time.perf_counter()
        ctx.progress.update("load over; waiting for the pipeline to process what it accepted")
        drain = await counters.wait_until_processed(
            ctx.metrics, before, started=started, load_ended=load_ended, limit_s=p.drain_limit_s
        )
        await asyncio.sleep(1.5)  # the last coalesced VitalsUpdated leave ≤ 0.31 s later
    finally:
        ticker.cancel()
    done = _Pass(name, rate, load, registrations, deteriorating, p.latency_interval_s)
    done.result = {
        "offered_per_s": rate,
        "accepted": int(drain.accepted),
        "processed": int(drain.processed),
        "all_accepted_processed": int(drain.processed) == int(drain.accepted),
        "drain_after_load_s": drain.drain_s,
        "load_s": round(load_s, 2),
        "batch": batch,
        "interval_s": p.latency_interval_s,
        "deteriorating_patients": deteriorating,
        "alerts_raised": await _alerts_raised(ctx) - alerts_before,
        "offered": load.tally.to_dict(),
        "server": ctx.server.close_window(window),
        "load_generator": cpu.result(),
        # small requests: what each stage's fixed costs were shared by (as in the vitals phases)
        "mean_batch": (await counters.read(ctx.metrics)).minus(before).mean_batches(),
    }
    return done


def _sustained(one: _Pass) -> float | None:
    """Readings/s the pass processed, if the intake pushed back (the pipeline was saturated)."""
    result = one.result
    drain_s = result["drain_after_load_s"]
    if not one.load.tally.pushed_back or drain_s is None:
        return None
    # the backlog left at the end is processed at the same pace while the pass drains
    return float(result["processed"]) / (float(result["load_s"]) + float(drain_s))


async def _tick(ctx: Context, load: HttpLoad, started: float) -> None:
    while True:
        await asyncio.sleep(1.0)
        t = load.tally
        ctx.progress.update(
            f"accepted {t.readings_accepted:,} readings, pushed back {t.pushed_back:,}",
            min(time.perf_counter() - started, ctx.params.duration_s),
        )


async def _alerts_raised(ctx: Context) -> int:
    text = await ctx.metrics.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("healthflow_alert_changes_total{") and 'change="raised"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


class _Registrations:
    """POST /api/patients at a steady rate into the bench's wards, noting send and return."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.sent: dict[str, float] = {}
        self.returned: dict[str, float] = {}
        self.ward_of: dict[str, str] = {}
        self.errors: Counter[int | str] = Counter()

    async def run(self, rate: float, duration_s: float) -> None:
        if rate <= 0:
            return
        tasks = []
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < duration_s:
            tasks.append(asyncio.create_task(self._one(n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        await asyncio.gather(*tasks)

    async def _one(self, n: int) -> None:
        name = ward(n, self._ctx.params.wards)
        sent = time.monotonic()
        try:
            response = await self._ctx.http.post(
                "/api/patients", json=PATIENT_BODY | {"ward": name}
            )
        except httpx.HTTPError as exc:
            self.errors[type(exc).__name__] += 1
            return
        returned = time.monotonic()
        if response.status_code != 201:
            self.errors[response.status_code] += 1
            return
        patient_id = response.json()["id"]
        self.sent[patient_id], self.returned[patient_id] = sent, returned
        self.ward_of[patient_id] = name


def _analyse(
    report: ClientReport,
    one: _Pass,
    topics: list[list[str]],
    ward_of_patient: dict[str, str],
    known: set[tuple[str, int]],
    known_patients: set[str],
) -> dict[str, Any]:
    """This pass's latencies from what the clients received; other passes' receipts skipped."""
    accepted_at = one.load.tally.accepted_at
    batch_of = one.load.tally.batch_of
    registrations = one.registrations
    clients_per_ward = Counter(t[1].removeprefix("ward:") for t in topics)
    everything: list[float] = []
    # per request, the arrivals of its earliest reading that was pushed: when its data first
    # shows (the monitor pushes a patient's newest reading of a worker batch, and the hub may
    # hold it), measured from that request's 202
    first_shown: dict[tuple[str, int], tuple[int, list[float]]] = {}
    sent_at = one.load.tally.sent_at
    alert_ms: list[float] = []
    created_after_return: list[float] = []
    created_after_send: list[float] = []
    early = unmatched = 0
    delivered = Counter[str]()
    for (kind, patient, ts), arrivals in report.receipts.items():
        if kind == "PatientCreated":
            if patient not in registrations.returned:
                unmatched += 0 if patient in known_patients else len(arrivals)
                continue
            delivered[kind] += len(arrivals)
            for at in arrivals:
                # the push leaves at commit, before the reply: it often arrives first
                created_after_return.append(max(0.0, (at - registrations.returned[patient]) * 1000))
                created_after_send.append((at - registrations.sent[patient]) * 1000)
            continue
        accepted = accepted_at.get((patient, ts))
        if accepted is None:
            unmatched += 0 if (patient, ts) in known else len(arrivals)
            continue
        delivered[kind] += len(arrivals)
        samples = []
        for at in arrivals:
            ms = (at - accepted) * 1000
            if ms < 0:  # pushed before the bench's loop got round to reading the 202
                early += 1
                ms = 0.0
            samples.append(ms)
        if kind == "VitalsUpdated":
            everything.extend(samples)
            request = (patient, batch_of[(patient, ts)])
            if request not in first_shown or ts < first_shown[request][0]:
                first_shown[request] = (ts, arrivals)
        else:
            alert_ms.extend(samples)
    leading: list[float] = []
    from_send: list[float] = []
    # the requests accepted once every monitor has posted once (one interval after the first
    # 202): the first round meets cold caches (each device's key, each patient's ward and
    # NEWS2 state read for the first time), what follows is the steady state. Reported beside
    # the whole pass, not instead of it.
    first_round_ends = min(accepted_at.values(), default=0.0) + one.load_interval_s
    after_first_round: list[float] = []
    for (patient, first_ts), (_, arrivals) in first_shown.items():
        accepted = accepted_at[(patient, first_ts)]
        sent = sent_at[(patient, first_ts)]
        shown = [max(0.0, (at - accepted) * 1000) for at in arrivals]
        leading.extend(shown)
        if accepted >= first_round_ends:
            after_first_round.extend(shown)
        from_send.extend((at - sent) * 1000 for at in arrivals)
    accepted_by_ward = Counter(ward_of_patient[p] for p, _ in accepted_at)
    vitals_ceiling = sum(accepted_by_ward[w] * n for w, n in clients_per_ward.items())
    created_expected = sum(clients_per_ward[w] for w in registrations.ward_of.values())
    connected = report.subscribed
    return {
        "vitals_first_shown_ms": percentiles(leading),
        "vitals_first_shown_after_first_round_ms": percentiles(after_first_round),
        # an upper bound: includes the request itself (the 202 may be read late by a busy bench)
        "vitals_first_shown_from_send_ms": percentiles(from_send),
        "vitals_every_update_ms": percentiles(everything),
        "alert_raised_ms": percentiles(alert_ms),
        "patient_created_after_return_ms": percentiles(created_after_return),
        "patient_created_after_send_ms": percentiles(created_after_send),
        "deliveries": {
            "vitals_updated": delivered["VitalsUpdated"],
            # coalescing sends fewer: every accepted reading to every client of its ward at most
            "vitals_updated_ceiling": vitals_ceiling,
            "alert_raised": delivered["AlertRaised"],
            "alert_raised_expected": one.result["alerts_raised"] * connected,
            "patient_created": delivered["PatientCreated"],
            "patient_created_expected": created_expected,
            "unmatched": unmatched,
            "arrived_before_202_was_read": early,
        },
        "registrations": {
            "count": len(registrations.returned),
            "errors": {str(k): v for k, v in registrations.errors.items()},
        },
    }
