"""Subprocess entry points for ``bench/api.py``: bare peer servers and load generators.

Each runs in its own process so that the server under test and the client that drives it
never share an interpreter (or a GIL). Usage: ``python bench/_workers.py COMMAND CONFIG_JSON``.
Servers print ``READY <port>`` and serve until SIGTERM; load generators print one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

GET_PATH = "/yandex.cloud.datasphere.v2.ProjectService/Get"
LIST_PATH = "/yandex.cloud.datasphere.v2.ProjectService/List"
MAX_ERRORS = 50  # a load generator gives up on a target after this many failed calls
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Call = Callable[[], Awaitable[bool]]


def _proc_cpu(pid: int) -> float:
    """User+system CPU seconds of ``pid`` (all threads); 0 where /proc is unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (steal included), summed over cores."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:9]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _TICK


def _ignore_sigint() -> None:
    """Ctrl-C reaches the whole process group; the orchestrator decides when we stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- bare peers: the same stacks as OpenSphere, with no application logic --------------------


async def bare_grpc(cfg: dict[str, Any]) -> None:
    """grpc.aio with a generic handler for the same path returning OpenSphere's exact bytes."""
    import grpc

    payload = bytes.fromhex(cfg["payload_hex"])

    async def get(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return payload

    service, method = GET_PATH.strip("/").split("/")
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # as OpenSphere builds it
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(get)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"READY {port}", flush=True)
    await stop.wait()
    await server.stop(1)


async def bare_rest(cfg: dict[str, Any]) -> None:
    """A raw ASGI app on uvicorn, configured as ``opensphere.server`` configures it.

    The listening socket is created with ``IPPROTO_TCP`` (as uvicorn's own binding does), so
    asyncio sets TCP_NODELAY on accepted connections and the peer shows the stack's ceiling.
    """
    import uvicorn

    body = bytes.fromhex(cfg["body_hex"])
    headers = [(b"content-type", cfg["content_type"].encode()),
               (b"content-length", str(len(body)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)

    def stop() -> None:
        server.should_exit = True

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    await task


# --- load generators ---------------------------------------------------------------------------


@dataclass
class Totals:
    """What one target got over all its measured slices."""

    calls: int = 0
    errors: int = 0
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0
    slice_rps: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        wall = self.wall or float("nan")
        lat = sorted(self.latencies)
        return {
            "rps": self.calls / wall, "calls": self.calls, "errors": self.errors,
            "wall": self.wall, "slice_rps": self.slice_rps,
            "server_cpu": self.server_cpu / wall, "client_cpu": self.client_cpu / wall,
            "other_cpu": max(0.0, self.machine_cpu - self.server_cpu - self.client_cpu) / wall,
            "p50": statistics.median(lat) if lat else None,
            "p95": statistics.quantiles(lat, n=20)[18] if len(lat) > 1 else None,
        }


async def _window(call: Call, concurrency: int, seconds: float, server_pid: int,
                  totals: Totals | None) -> None:
    """``concurrency`` callers for ``seconds``; every call in flight is awaited before return.

    Only completions inside the window count; CPU of server, client and machine is sampled
    at its edges. ``totals=None`` is a warm-up.
    """
    me = os.getpid()
    cpu0 = (_proc_cpu(server_pid), _proc_cpu(me), _machine_busy())
    start = time.perf_counter()
    end = start + seconds
    done, errors = 0, 0
    latencies: list[float] = []

    async def caller() -> None:
        nonlocal done, errors
        while errors < MAX_ERRORS:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            ok = await call()
            t1 = time.perf_counter()
            if not ok:
                errors += 1
            elif t1 <= end:
                done += 1
                latencies.append(t1 - t0)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = min(time.perf_counter(), end) - start
    cpu1 = (_proc_cpu(server_pid), _proc_cpu(me), _machine_busy())
    if totals is None:
        if errors:
            raise SystemExit(f"{errors} calls failed during the warm-up")
        return
    totals.calls += done
    totals.errors += errors
    totals.wall += wall
    totals.server_cpu += cpu1[0] - cpu0[0]
    totals.client_cpu += cpu1[1] - cpu0[1]
    totals.machine_cpu += cpu1[2] - cpu0[2]
    totals.slice_rps.append(done / wall if wall else 0.0)
    totals.latencies.extend(latencies)


async def _compare(calls: dict[str, Call], pids: dict[str, int], cfg: dict[str, Any]
                   ) -> dict[str, Any]:
    """Interleave the targets in short slices (A B B A ...) so background load hits both alike.

    Two phases: ``concurrency`` callers for throughput, then one caller for latency.
    """
    names = list(calls)
    result: dict[str, Any] = {}
    for phase, concurrency, seconds in (("loaded", cfg["concurrency"], cfg["seconds"]),
                                        ("single", 1, cfg["single_seconds"])):
        for name in names:
            await _window(calls[name], concurrency, cfg["warmup"], pids[name], None)
        slice_s = min(cfg["slice"], seconds)
        rounds = max(1, round(seconds / slice_s))
        totals = {name: Totals() for name in names}
        for r in range(rounds):
            for name in names if r % 2 == 0 else reversed(names):
                await _window(calls[name], concurrency, slice_s, pids[name], totals[name])
        result[phase] = {name: t.summary() for name, t in totals.items()}
    return result


async def load_grpc(cfg: dict[str, Any]) -> dict[str, Any]:
    """Unary Get with pre-serialized bytes, over ``channels`` grpc.aio channels per target."""
    import grpc

    request = bytes.fromhex(cfg["request_hex"])
    expected = bytes.fromhex(cfg["payload_hex"])
    metadata = (("authorization", f"Bearer {cfg['token']}"),)
    channels: list[grpc.aio.Channel] = []

    def make_call(target: str) -> Call:
        chans = [grpc.aio.insecure_channel(target) for _ in range(cfg["channels"])]
        channels.extend(chans)
        stubs = [ch.unary_unary(GET_PATH) for ch in chans]  # no (de)serializers: raw bytes
        turn = 0

        async def call() -> bool:
            nonlocal turn
            turn += 1
            try:
                reply = await stubs[turn % len(stubs)](request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as err:
                print(f"{target}: {err.code().name}: {err.details()}", file=sys.stderr)
                return False
            return reply == expected

        return call

    try:
        return await _compare({n: make_call(t) for n, t in cfg["targets"].items()},
                              cfg["pids"], cfg)
    finally:
        for ch in channels:
            await ch.close()


class _HttpConnection:
    """A minimal HTTP/1.1 keep-alive client: one request in flight per connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


async def load_rest(cfg: dict[str, Any]) -> dict[str, Any]:
    """GET over ``concurrency`` keep-alive connections per target, one caller per connection."""
    expected = bytes.fromhex(cfg["body_hex"])
    writers: list[asyncio.StreamWriter] = []

    async def make_call(target: str) -> Call:
        host, port = target.rsplit(":", 1)
        request = (f"GET {cfg['path']} HTTP/1.1\r\nHost: {target}\r\n"
                   f"Authorization: Bearer {cfg['token']}\r\nAccept: application/json\r\n\r\n"
                   ).encode()
        pool = [_HttpConnection(*await asyncio.open_connection(host, int(port)))
                for _ in range(cfg["concurrency"])]
        writers.extend(c.writer for c in pool)

        async def call() -> bool:
            conn = pool.pop()
            try:
                status, body = await conn.get(request)
            finally:
                pool.append(conn)
            if status != 200:
                print(f"{target}: HTTP {status}: {body[:200]!r}", file=sys.stderr)
            return status == 200 and body == expected

        return call

    try:
        calls = {n: await make_call(t) for n, t in cfg["targets"].items()}
        return await _compare(calls, cfg["pids"], cfg)
    finally:
        for writer in writers:
            writer.close()


def list_latency(cfg: dict[str, Any]) -> dict[str, Any]:
    """Walk to each offset with ``next_page_token``, then time single List pages, round-robin.

    One sequential client, so each sample is the latency of one page with nothing queued.
    """
    import grpc

    from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps

    metadata = (("authorization", f"Bearer {cfg['token']}"),)
    channel = grpc.insecure_channel(cfg["target"])
    raw_list = channel.unary_unary(LIST_PATH)  # raw bytes, so timing excludes client parsing
    community, page = cfg["community_id"], cfg["page_size"]

    def fetch(token: str, size: int) -> ps.ListProjectsResponse:
        request = ps.ListProjectsRequest(community_id=community, page_size=size, page_token=token)
        return ps.ListProjectsResponse.FromString(
            raw_list(request.SerializeToString(), metadata=metadata, timeout=60))

    walk_started = time.perf_counter()
    tokens: dict[int, str] = {}
    position, token, walk_pages = 0, "", 0
    for offset in sorted(cfg["offsets"]):
        while position < offset:
            reply = fetch(token, min(cfg["walk_page_size"], offset - position))
            if not reply.next_page_token:
                raise SystemExit(f"the walk ended at {position}, before offset {offset}")
            position += len(reply.projects)
            token, walk_pages = reply.next_page_token, walk_pages + 1
        tokens[offset] = token
    walk_seconds = time.perf_counter() - walk_started

    requests = {o: ps.ListProjectsRequest(community_id=community, page_size=page,
                                          page_token=t).SerializeToString()
                for o, t in tokens.items()}
    for offset, expected_first in zip(cfg["offsets"], cfg["expected_first_ids"], strict=True):
        reply = fetch(tokens[offset], page)
        if len(reply.projects) != page or reply.projects[0].id != expected_first:
            raise SystemExit(f"page at offset {offset} starts at {reply.projects[0].id}, "
                             f"expected {expected_first}")

    samples: dict[int, list[float]] = {o: [] for o in cfg["offsets"]}
    measure_from = time.perf_counter() + cfg["warmup"]
    deadline = measure_from + cfg["seconds"] * len(cfg["offsets"])
    for _ in range(cfg["max_rounds"]):
        if time.perf_counter() >= deadline:
            break
        for offset, body in requests.items():
            t0 = time.perf_counter()
            raw_list(body, metadata=metadata, timeout=60)
            if t0 >= measure_from:
                samples[offset].append(time.perf_counter() - t0)
    channel.close()
    return {"samples": {str(o): s for o, s in samples.items()},
            "walk_seconds": walk_seconds, "walk_pages": walk_pages}


def main() -> None:
    command, cfg = sys.argv[1], json.loads(sys.argv[2])
    _ignore_sigint()
    if command == "bare-grpc":
        asyncio.run(bare_grpc(cfg))
        return
    if command == "bare-rest":
        asyncio.run(bare_rest(cfg))
        return
    if command == "load-grpc":
        result = asyncio.run(load_grpc(cfg))
    elif command == "load-rest":
        result = asyncio.run(load_rest(cfg))
    elif command == "list-latency":
        result = list_latency(cfg)
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
