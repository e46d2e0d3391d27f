"""Live-push benchmark: C WebSocket clients on one server process, M messages/s for D seconds.

    python benchmarks/realtime.py [--clients 2000] [--rate 1000] [--duration 30] [--wards 50]

One `healthflow` server process (the real app under uvicorn with the hub's WebSocket protocol,
memory hub unless --backplane) runs a publisher task inside it that calls `hub.broadcast` M
times a second, spread evenly over W wards, each message stamped with its wall-clock send time.
Client processes open C connections, each subscribing to one ward (`ward:W{i % W}`), answer
pings, check that seqs only go up, and record publish-to-receive latency. Reported: p50/p95/p99
latency, messages delivered/expected (to clients that were not dropped), clients dropped as too
slow, server peak RSS and RSS per idle connection, and the CPU the server, the clients and the
rest of the machine used while publishing, with where the latency builds up (server fan-out,
event-loop lag in the server and in the clients).
This is a measurement, not a test: it asserts nothing. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import gc
import hashlib
import json
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentiles(values: Any, scale: float = 1000.0) -> dict[str, float]:
    """p50/p95/p99/max of seconds, in milliseconds."""
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(p: float) -> float:
        return round(ordered[min(int(p * len(ordered)), len(ordered) - 1)] * scale, 2)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1] * scale, 2)}


def run_loop(main: Any) -> None:
    # the loop `healthflow serve` gets from uvicorn when uvloop is installed
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def lag_sampler(out: array[float], every: float = 0.005) -> None:
    """How late the event loop wakes a task that sleeps `every` seconds: its queueing delay."""
    started = time.perf_counter()
    while True:
        before = time.perf_counter()
        await asyncio.sleep(every)
        lag = time.perf_counter() - before - every
        out.append(lag)
        if lag > 0.2 and os.environ.get("BENCH_STALLS"):
            print(f"stall {lag:.3f}s at {before - started:.1f}s", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- server process


def collector_time() -> Any:
    """Start timing Python's garbage collector; the returned callable reports (and stops)."""
    spent = [0.0, 0.0, 0.0]
    runs = [0, 0, 0]
    started = [0.0]

    def track(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]
            runs[info["generation"]] += 1

    gc.callbacks.append(track)

    def report() -> dict[str, Any]:
        gc.callbacks.remove(track)
        return {"collections": runs, "seconds": [round(s, 2) for s in spent]}

    return report


async def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from healthflow.app import build_app
    from healthflow.realtime.uvicorn_ws import UVICORN_WS_OPTIONS
    from healthflow.settings import Settings

    env: dict[str, Any] = {
        "data_dir": Path(args.data_dir),
        "log_level": "warning",
        "hub_max_clients": args.clients + 100,
        "hub_metrics_interval_s": 3600.0,
        # thousands of connections from one address in seconds: not what the limits are for
        "rate_limit_client_per_minute": 10_000_000,
        "rate_limit_subject_per_minute": 10_000_000,
    }
    if args.backplane:
        env["hub_backplane_url"] = args.backplane
        env["hub_redis_prefix"] = f"bench-{os.getpid()}"
    app = build_app(Settings(**env))
    gc.freeze()  # as `healthflow serve` does
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # --asgi-send: uvicorn's own protocol, so every frame goes through an ASGI send (the "before")
    ws_options = {} if args.asgi_send else UVICORN_WS_OPTIONS
    config = uvicorn.Config(app, log_level="warning", lifespan="on", backlog=4096, **ws_options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
        await asyncio.sleep(0.05)
    hub = app.state.hub
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    minter = app.state.platform.security.dev_tokens
    token = minter.mint("bench", "admin", now=datetime.now(UTC), ttl=timedelta(hours=2))
    print(json.dumps({"port": port, "rss_kib": rss_kib(), "token": token}), flush=True)
    while True:
        command = (await reader.readline()).decode().strip()
        if command == "rss":
            print(json.dumps({"rss_kib": rss_kib()}), flush=True)
        elif command == "go":
            before = resource.getrusage(resource.RUSAGE_SELF)
            profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
            if profile:
                profile.enable()
            lags: array[float] = array("d")
            sampler = asyncio.create_task(lag_sampler(lags))
            gc_time = collector_time()
            published, fanout, late = await publish(hub, args.rate, args.duration, args.wards)
            sampler.cancel()
            after = resource.getrusage(resource.RUSAGE_SELF)
            if profile:
                profile.disable()
                profile.dump_stats(os.environ["BENCH_PROFILE"])
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            reply = {
                "published": published,
                "peak_rss_kib": after.ru_maxrss,
                "cpu_s": cpu,
                "fanout_ms": percentiles(fanout),
                "publisher_late_ms": percentiles(late),
                "loop_lag_ms": percentiles(lags),
                "gc": gc_time(),
            }
            print(json.dumps(reply), flush=True)
        else:
            break
    server.should_exit = True
    await task
    if args.backplane:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(args.backplane)
        await client.delete(hub.stream)
        await client.aclose()


async def publish(hub: Any, rate: int, duration: float, wards: int) -> tuple[list[int], Any, Any]:
    """Publish at `rate`; per message, how long after its stamp `broadcast` returned, and how
    late after its slot in the schedule it was stamped.

    With the memory hub and the hub's protocol that is when the message was written to every
    subscriber's socket (fan-out is synchronous); with --asgi-send or Redis, when it was queued.
    """
    per_ward = [0] * wards
    fanout: array[float] = array("d")
    late: array[float] = array("d")
    tick = 0.01
    started = time.perf_counter()
    started_wall = time.time()
    sent = 0
    while (elapsed := time.perf_counter() - started) < duration:
        due = int(elapsed * rate)
        while sent < due:
            ward = sent % wards
            data = {"ward": f"W{ward}", "n": sent, "sent_at": time.time()}
            await hub.broadcast("AlertUpdated", data, datetime.now(UTC))
            fanout.append(time.time() - data["sent_at"])
            # how long after its slot in the schedule the message was published: a saturated
            # (or starved) server loop shows here, not in publish-to-receive latency
            late.append(max(0.0, data["sent_at"] - started_wall - sent / rate))
            per_ward[ward] += 1
            sent += 1
        await asyncio.sleep(tick)
    return per_ward, fanout, late


# ----------------------------------------------------------------------------- lean clients

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class LeanClient(asyncio.Protocol):
    """A minimal RFC 6455 client: handshake, then unmasked server frames parsed in place.

    The `websockets` client spends most of a core on 20,000 frames/s (generator-based parser,
    assembler, a task switch per message); this one does per frame what any client must:
    find the frame, decode the JSON, note the time. It sends with the websockets library's
    frame encoder (masked, as clients must), which is rare: subscribe and pongs.
    """

    def __init__(self, i: int, url: Any, topic: str, run: ClientRun) -> None:
        self.i = i
        self.url = url
        self.topic = topic
        self.run = run
        self.key = base64.b64encode(os.urandom(16))
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.open = False
        self.last_seq = 0
        self.delivered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] (uvloop's are not subclasses)
        target = f"{self.url.path}?{self.url.query}".encode()
        transport.write(
            b"GET " + target + b" HTTP/1.1\r\nHost: " + self.url.netloc.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: " + self.key + b"\r\n\r\n"
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.run.stopping and self.i not in self.run.closed:
            self.run.closed[self.i] = None
        self.run.settled(self.i)

    def send(self, opcode: int, payload: bytes) -> None:
        from websockets.frames import Frame, Opcode

        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(Frame(Opcode(opcode), payload).serialize(mask=True))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self.handshake(buffer[:end])
            buffer = buffer[end + 4 :]
        run = self.run
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            head = buffer[pos]
            length = buffer[pos + 1]
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length >= 127:  # 127: 64-bit length; a set mask bit is a server error
                run.errors += 1
                assert self.transport is not None
                self.transport.close()
                return
            end = start + length
            if end > size:
                break
            payload = buffer[start:end]
            pos = end
            opcode = head & 0x0F
            if opcode == 1 and head & 0x80:
                self.text(payload)
            elif opcode == 9:  # the server's protocol-level ping
                self.send(0xA, payload)
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                run.closed[self.i] = code
            elif opcode != 0xA:
                run.errors += 1  # a fragmented or binary frame: the hub sends neither
        self.buffer = buffer[pos:]

    def handshake(self, head: bytes) -> None:
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())  # noqa: S324 (RFC 6455)
        status, _, rest = head.partition(b"\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in rest.split(b"\r\n"))
        }
        if b" 101 " not in status + b" " or headers.get(b"sec-websocket-accept") != accept:
            self.run.closed[self.i] = None
            assert self.transport is not None
            self.transport.close()
            return
        self.open = True
        self.send(1, b'{"op":"subscribe","topics":["' + self.topic.encode() + b'"]}')

    def text(self, payload: bytes) -> None:
        import orjson

        frame = orjson.loads(payload)
        seq = frame.get("seq")
        if seq is not None:
            received = time.time()
            if seq <= self.last_seq:
                self.run.out_of_order += 1
            self.last_seq = seq
            self.delivered += 1
            self.run.total += 1
            self.run.latencies.append(received - frame["data"]["sent_at"])
        elif frame["type"] == "Ping":
            self.send(1, b'{"op":"pong"}')
        elif frame["type"] == "Subscribed":
            self.run.settled(self.i)


class ClientRun:
    """What one client process measured."""

    def __init__(self) -> None:
        self.latencies: array[float] = array("d")
        self.closed: dict[int, int | None] = {}
        self.ready: set[int] = set()
        self.errors = 0
        self.out_of_order = 0
        self.total = 0
        self.stopping = False

    def settled(self, i: int) -> None:
        self.ready.add(i)


async def lean_clients(
    url: str, first: int, count: int, wards: int, ready: Any, stop: Any, out: Any, progress: Any
) -> None:
    from urllib.parse import urlsplit

    loop = asyncio.get_running_loop()
    target = urlsplit(url)
    run = ClientRun()
    clients: list[LeanClient] = []

    async def open_one(i: int) -> None:
        client = LeanClient(i, target, f"ward:W{i % wards}", run)
        clients.append(client)
        try:
            await loop.create_connection(lambda: client, target.hostname, target.port)
        except OSError:
            run.closed[i] = None
            run.settled(i)

    for start in range(first, first + count, 100):
        await asyncio.gather(*(open_one(i) for i in range(start, min(start + 100, first + count))))
    while len(run.ready) < count:  # noqa: ASYNC110 (ready once every Subscribed or failure)
        await asyncio.sleep(0.1)
    lags: array[float] = array("d")
    ready.set()
    sampler = asyncio.create_task(lag_sampler(lags))
    while not stop.is_set():  # a multiprocessing event: polled, reporting progress
        progress.value = run.total
        await asyncio.sleep(0.1)
    sampler.cancel()
    run.stopping = True
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    out.put(
        {
            "latencies": run.latencies.tobytes(),
            "delivered": {c.i: c.delivered for c in clients},
            "closed": run.closed,
            "errors": run.errors,
            "out_of_order": run.out_of_order,
            "loop_lag": lags.tobytes(),
        }
    )


# ------------------------------------------------------------------- websockets-library clients


async def websockets_clients(
    url: str, first: int, count: int, wards: int, ready: Any, stop: Any, out: Any, progress: Any
) -> None:
    """The same clients on the `websockets` library (--client websockets): heavier per frame."""
    import orjson
    from websockets.asyncio.client import connect

    run = ClientRun()
    delivered: dict[int, int] = {}
    subscribed: set[int] = set()

    async def one(i: int) -> None:
        delivered[i] = 0
        last = 0
        try:
            async with connect(url, open_timeout=120, ping_interval=None, compression=None) as ws:
                await ws.send(orjson.dumps({"op": "subscribe", "topics": [f"ward:W{i % wards}"]}))
                async for raw in ws:
                    frame = orjson.loads(raw)
                    if "seq" in frame:
                        received = time.time()
                        run.out_of_order += frame["seq"] <= last
                        last = frame["seq"]
                        delivered[i] += 1
                        run.total += 1
                        run.latencies.append(received - frame["data"]["sent_at"])
                    elif frame["type"] == "Ping":
                        await ws.send(b'{"op":"pong"}')
                    elif frame["type"] == "Subscribed":
                        subscribed.add(i)
        except Exception as exc:
            run.closed[i] = getattr(getattr(exc, "rcvd", None), "code", None)

    tasks = []
    for i in range(first, first + count):
        tasks.append(asyncio.create_task(one(i)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.05)
    while len(subscribed) + len(run.closed) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    lags: array[float] = array("d")
    ready.set()
    sampler = asyncio.create_task(lag_sampler(lags))
    while not stop.is_set():  # a multiprocessing event: polled, reporting progress
        progress.value = run.total
        await asyncio.sleep(0.1)
    sampler.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.put(
        {
            "latencies": run.latencies.tobytes(),
            "delivered": delivered,
            "closed": run.closed,
            "errors": 0,
            "out_of_order": run.out_of_order,
            "loop_lag": lags.tobytes(),
        }
    )


def client_process(kind: str, *args: Any) -> None:
    run_loop((lean_clients if kind == "lean" else websockets_clients)(*args))


# ----------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="messages per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of publishing")
    parser.add_argument("--wards", type=int, default=50, help="each client watches one ward")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument(
        "--client",
        choices=("lean", "websockets"),
        default="lean",
        help="client implementation: a minimal RFC 6455 parser, or the websockets library",
    )
    parser.add_argument(
        "--asgi-send",
        action="store_true",
        help="serve with uvicorn's own WebSocket protocol: every frame through an ASGI send",
    )
    parser.add_argument("--backplane", default="", help="redis://... to go through Redis")
    parser.add_argument(
        "--server-session",
        action="store_true",
        help="start the server in its own session (own scheduler autogroup on Linux)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_loop(serve(args))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        command = [sys.executable, __file__, "--child", "--data-dir", data_dir]
        for name in ("clients", "rate", "duration", "wards", "backplane"):
            command += [f"--{name}", str(getattr(args, name))]
        if args.asgi_send:
            command.append("--asgi-send")
        # --server-session: the server in a session of its own, so that Linux's autogroup
        # scheduling gives it a CPU share of its own instead of splitting one with its clients
        server = subprocess.Popen(  # noqa: S603 (our own script, our own arguments)
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=args.server_session,
        )
        try:
            hello = answer(server, "port")
            report = drive(args, server, hello)
        finally:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(json.dumps(report, indent=2))


def answer(server: subprocess.Popen[str], key: str) -> dict[str, Any]:
    """The server's next JSON line holding `key` (log lines on the same pipe are skipped)."""
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                reply: dict[str, Any] = json.loads(line)
                if key in reply:
                    return reply
    raise RuntimeError("server process ended")


def cpu_ticks(pid: int) -> int:
    """User + system CPU of a process so far, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks() -> tuple[int, int, int]:
    """CPU ticks all cores spent busy so far (all processes, kernel included); of them, those in
    softirq (where loopback TCP is received: mostly this benchmark's own traffic, not charged
    to any process) and stolen by the hypervisor."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values[:8]) - idle, values[6], values[7]


def py_spy(pids: dict[str, int], duration: float) -> list[subprocess.Popen[bytes]]:
    """BENCH_PYSPY=prefix: sample the server and the first client while publishing (py-spy,
    collapsed stacks in prefix-server.txt / prefix-client0.txt; BENCH_PYSPY_NATIVE=1 adds C)."""
    prefix = os.environ["BENCH_PYSPY"]
    extra = ["--native"] if os.environ.get("BENCH_PYSPY_NATIVE") else []
    return [
        subprocess.Popen(  # noqa: S603
            [
                str(Path(sys.executable).with_name("py-spy")),  # pip install py-spy
                "record",
                "--pid",
                str(pids[name]),
                "--duration",
                str(int(duration) - 2),
                "--rate",
                "200",
                "--format",
                "raw",
                "-o",
                f"{prefix}-{name}.txt",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("server", "client0")
    ]


def drain(published: list[int], args: argparse.Namespace, progresses: list[Any]) -> None:
    """Wait until the clients received everything published, or made no progress for 5 s."""
    expected = sum(published[i % args.wards] for i in range(args.clients))
    seen, since = -1, time.perf_counter()
    while (now := time.perf_counter()) - since < 5:
        got = sum(p.value for p in progresses)
        if got >= expected:
            return
        if got != seen:
            seen, since = got, now
        time.sleep(0.1)


def drive(args: argparse.Namespace, server: subprocess.Popen[str], hello: dict[str, Any]) -> Any:
    assert server.stdin is not None
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    per_proc = args.clients // args.client_procs
    procs, readies, progresses = [], [], []
    connect_started = time.perf_counter()
    for p in range(args.client_procs):
        count = per_proc if p < args.client_procs - 1 else args.clients - per_proc * p
        ready = ctx.Event()
        progresses.append(ctx.Value("q", 0, lock=False))
        proc = ctx.Process(
            target=client_process,
            args=(
                args.client,
                f"ws://127.0.0.1:{hello['port']}/ws?access_token={hello['token']}",
                p * per_proc,
                count,
                args.wards,
                ready,
                stop,
                out,
                progresses[-1],
            ),
        )
        proc.start()
        procs.append(proc)
        readies.append(ready)
    for ready in readies:
        ready.wait(timeout=600)
    connect_s = time.perf_counter() - connect_started
    server.stdin.write("rss\n")
    server.stdin.flush()
    idle_rss = answer(server, "rss_kib")["rss_kib"]
    pids = {"server": server.pid, **{f"client{i}": p.pid for i, p in enumerate(procs)}}
    ticks_before = {name: cpu_ticks(pid) for name, pid in pids.items() if pid is not None}
    machine_before, wall_before = machine_ticks(), time.perf_counter()
    server.stdin.write("go\n")
    server.stdin.flush()
    spies = py_spy(pids, args.duration) if os.environ.get("BENCH_PYSPY") else []
    result = answer(server, "published")
    for spy in spies:
        spy.wait()
    drain(result["published"], args, progresses)
    ticks = {name: cpu_ticks(pid) - ticks_before[name] for name, pid in pids.items() if pid}
    machine_after = machine_ticks()
    machine, softirq, steal = (a - b for a, b in zip(machine_after, machine_before, strict=True))
    wall = time.perf_counter() - wall_before
    stop.set()
    parts = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    server.stdin.write("quit\n")
    server.stdin.flush()
    hz = os.sysconf("SC_CLK_TCK")
    cores = {name: round(t / hz / wall, 2) for name, t in ticks.items()}
    clients_cores = round(sum(v for k, v in cores.items() if k.startswith("client")), 2)
    usage = {
        "window_s": round(wall, 1),
        "server_cores": cores["server"],
        "clients_cores": clients_cores,
        "per_client_process_cores": [v for k, v in cores.items() if k.startswith("client")],
        "everything_else_cores": round(machine / hz / wall - cores["server"] - clients_cores, 2),
        "of_which_softirq_cores": round(softirq / hz / wall, 2),
        "stolen_cores": round(steal / hz / wall, 2),
        "machine_cores": os.cpu_count(),
    }
    return summarise(args, hello, idle_rss, result, parts, connect_s, usage)


def summarise(
    args: argparse.Namespace,
    hello: dict[str, Any],
    idle_rss: int,
    result: dict[str, Any],
    parts: list[dict[str, Any]],
    connect_s: float,
    usage: dict[str, Any],
) -> dict[str, Any]:
    latencies: array[float] = array("d")
    client_lags: array[float] = array("d")
    delivered: dict[int, int] = {}
    closed: dict[int, Any] = {}
    for part in parts:
        latencies.frombytes(part["latencies"])
        client_lags.frombytes(part["loop_lag"])
        delivered.update({int(k): v for k, v in part["delivered"].items()})
        closed.update({int(k): v for k, v in part["closed"].items()})
    published = result["published"]
    kept_up = [i for i in delivered if i not in closed]
    expected = sum(published[i % args.wards] for i in kept_up)
    got = sum(delivered[i] for i in kept_up)
    return {
        "clients": args.clients,
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "wards": args.wards,
        "backplane": args.backplane or "memory",
        "server_ws": "uvicorn + ASGI send" if args.asgi_send else "hub frame writer",
        "client": f"{args.client} x {args.client_procs} processes",
        "server_session": "own" if args.server_session else "shared with the clients",
        "published": sum(published),
        "published_of_scheduled": round(sum(published) / (args.rate * args.duration), 4),
        "deliveries_expected": expected,
        "deliveries": got,
        "delivered_ratio": round(got / expected, 6) if expected else None,
        "clients_dropped": len(closed),
        "out_of_order": sum(part["out_of_order"] for part in parts),
        "client_frame_errors": sum(part["errors"] for part in parts),
        "latency_ms": percentiles(latencies),
        "publisher_late_ms": result["publisher_late_ms"],
        "server_fanout_ms": result["fanout_ms"],
        "server_gc_by_generation": result["gc"],
        "server_loop_lag_ms": result["loop_lag_ms"],
        "client_loop_lag_ms": percentiles(client_lags),
        "cpu_while_publishing": usage,
        # CPU time is what contention does not change much: the figure to compare across runs
        "cpu_us_per_delivery": {
            side: round(usage[f"{side}_cores"] * usage["window_s"] / got * 1e6, 2) if got else None
            for side in ("server", "clients")
        },
        "server_cpu_s_while_publishing": round(result["cpu_s"], 1),
        "server_rss_start_mib": round(hello["rss_kib"] / 1024, 1),
        "server_rss_idle_clients_mib": round(idle_rss / 1024, 1),
        "server_peak_rss_mib": round(result["peak_rss_kib"] / 1024, 1),
        "kib_per_idle_connection": round((idle_rss - hello["rss_kib"]) / args.clients, 1),
        "connect_s": round(connect_s, 1),
    }


if __name__ == "__main__":
    main()
