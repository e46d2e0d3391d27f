"""Real WebSocket dashboards in a few processes of their own, so the clients do not share the
bench's event loop (and their CPU is measured apart).

Each process holds its share of the connections, subscribes each to its topics, answers the
server's pings and notes when each message arrived (CLOCK_MONOTONIC, the same clock in every
process of the machine). The bench ties arrivals back to the moment the reading was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

Receipts = dict[tuple[str, str, int], list[float]]  # (type, patient, ts ms) → arrival times


@dataclass
class ClientReport:
    """What all client processes received, merged."""

    receipts: Receipts = field(default_factory=lambda: defaultdict(list))
    bare_latencies_ms: list[float] = field(default_factory=list)
    messages: int = 0
    out_of_order: int = 0  # a seq not above the connection's previous one (a repeat or a swap)
    subscribed: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # close code / error → connections
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "connected": self.subscribed,
            "messages_received": self.messages,
            "out_of_order": self.out_of_order,
            "failed": self.failed,
            "cpu_s": round(self.cpu_s, 2),
            "cpu_cores": round(self.cpu_s / self.wall_s, 2) if self.wall_s else 0.0,
        }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ts_ms(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso).timestamp() * 1000)


async def _clients(url: str, topics: list[list[str]], ready: Any, stop: Any, out: Any) -> None:
    from websockets.asyncio.client import connect

    receipts: Receipts = defaultdict(list)
    bare: list[float] = []
    counts = {"messages": 0, "out_of_order": 0}
    failed: dict[str, int] = defaultdict(int)
    subscribed: set[int] = set()
    now = time.monotonic

    async def one(i: int, wanted: list[str]) -> None:
        last_seq = 0
        try:
            async with connect(
                url, open_timeout=120, ping_interval=None, compression=None, max_queue=None
            ) as ws:
                await ws.send(orjson.dumps({"op": "subscribe", "topics": wanted}).decode())
                async for raw in ws:
                    at = now()
                    frame = orjson.loads(raw)
                    seq = frame.get("seq")
                    if seq is None:
                        kind = frame.get("type")
                        if kind == "Ping":
                            await ws.send('{"op":"pong"}')
                        elif kind == "Subscribed":
                            subscribed.add(i)
                        continue
                    counts["messages"] += 1
                    if seq <= last_seq:
                        counts["out_of_order"] += 1
                    last_seq = seq
                    kind = frame["type"]
                    data = frame["data"]
                    if kind == "VitalsUpdated":
                        key = (kind, data["patient_id"], _ts_ms(data["reading"]["ts"]))
                        receipts[key].append(at)
                    elif kind == "AlertRaised":
                        receipts[(kind, data["patient_id"], _ts_ms(data["opened_at"]))].append(at)
                    elif kind == "PatientCreated":
                        receipts[(kind, data["patient_id"], 0)].append(at)
                    elif kind == "Bare":
                        bare.append((at - data["sent"]) * 1000)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            failed[str(code) if code is not None else type(exc).__name__] += 1

    tasks = []
    for i, wanted in enumerate(topics):
        tasks.append(asyncio.create_task(one(i, wanted)))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.05)  # a connection storm would measure the accept queue
    while len(subscribed) + sum(failed.values()) < len(topics):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    ready.set()
    cpu_start, wall_start = _cpu(), now()
    while not stop.is_set():  # noqa: ASYNC110 (a multiprocessing event: polled)
        await asyncio.sleep(0.1)
    cpu, wall = _cpu() - cpu_start, now() - wall_start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.put(
        {
            "receipts": dict(receipts),
            "bare": bare,
            "messages": counts["messages"],
            "out_of_order": counts["out_of_order"],
            "subscribed": len(subscribed),
            "failed": dict(failed),
            "cpu_s": cpu,
            "wall_s": wall,
        }
    )


def _client_process(url: str, topics: list[list[str]], ready: Any, stop: Any, out: Any) -> None:
    import uvloop

    uvloop.run(_clients(url, topics, ready, stop, out))


class Dashboards:
    """C WebSocket clients over P processes; `async with` connects them, `report()` collects."""

    def __init__(self, url: str, topics: list[list[str]], processes: int) -> None:
        self._url = url
        self._topics = topics
        self._n = max(1, min(processes, len(topics)))
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()
        self._out: Any = self._ctx.Queue()
        self._procs: list[Any] = []
        self._readies: list[Any] = []
        self.connect_s = 0.0

    async def __aenter__(self) -> Dashboards:
        started = time.monotonic()
        for p in range(self._n):
            share = self._topics[p :: self._n]
            ready = self._ctx.Event()
            proc = self._ctx.Process(
                target=_client_process,
                args=(self._url, share, ready, self._stop, self._out),
                daemon=True,
            )
            proc.start()
            self._procs.append(proc)
            self._readies.append(ready)
        for ready in self._readies:
            while not ready.is_set():
                if not any(p.is_alive() for p in self._procs):
                    raise RuntimeError("the WebSocket client processes died")
                if time.monotonic() - started > 600:
                    raise RuntimeError("WebSocket clients did not connect within 600 s")
                await asyncio.sleep(0.1)
        self.connect_s = time.monotonic() - started
        return self

    async def report(self) -> ClientReport:
        """Stop the clients and merge what they received (once)."""
        self._stop.set()
        merged = ClientReport()
        loop = asyncio.get_running_loop()
        for _ in self._procs:
            part = await loop.run_in_executor(None, self._out.get, True, 300)
            for key, times in part["receipts"].items():
                merged.receipts[key].extend(times)
            merged.bare_latencies_ms.extend(part["bare"])
            merged.messages += part["messages"]
            merged.out_of_order += part["out_of_order"]
            merged.subscribed += part["subscribed"]
            for code, n in part["failed"].items():
                merged.failed[code] = merged.failed.get(code, 0) + n
            merged.cpu_s += part["cpu_s"]
            merged.wall_s = max(merged.wall_s, part["wall_s"])
        return merged

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        with contextlib.suppress(Exception):
            self._out.close()
