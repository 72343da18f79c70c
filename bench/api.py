"""How much of the transport's ceiling OpenSphere keeps, and whether deep pages stay cheap.

Run: ``.venv/bin/python bench/api.py [--seconds N] [--projects 100000] [--quick]``.

1. ``ProjectService.Get`` over gRPC and over REST, 16 calls in flight, against the real
   ``opensphere serve`` and against a bare peer on the same stack (grpc.aio, or uvicorn with
   OpenSphere's settings) that returns the exact bytes OpenSphere returned; then the same
   with one client, for latency.
2. Latency of one ``ProjectService.List`` page (100 items) at offsets deep into one
   community, reached by walking ``next_page_token`` as a client would.

Every server and every load generator is its own process (see ``_workers.py``) and all
traffic stays on 127.0.0.1. OpenSphere and its peer are driven in alternating short slices,
so that load from other processes on a small shared machine hits both alike; the CPU each
process used, and what the rest of the machine used, is printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
WORKERS = BENCH / "_workers.py"
READY = re.compile(r"gRPC on (\S+), REST on (\S+); data in")
PAGE_SIZE = 100
WALK_PAGE_SIZE = 1000
START_TIMEOUT = 60.0
# Children get SIGTERM when this process dies, even by SIGKILL (Linux; elsewhere a no-op).
_SHIM = ("import ctypes, os, signal, sys\n"
         "try:\n    ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
         "except (AttributeError, OSError):\n    pass\n"
         "os.execv(sys.argv[1], sys.argv[1:])")


@dataclass
class Children:
    """Every subprocess we start, so that any exit path (Ctrl-C included) stops them all."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, argv: list[str], stderr: IO[Any] | int | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", _SHIM, *argv], stdout=subprocess.PIPE,
                                stderr=stderr, env=env)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, timeout=5.0)


def _read_line(proc: subprocess.Popen[bytes], pattern: re.Pattern[str], what: str,
               log: Path | None = None) -> re.Match[str]:
    """Wait (bounded) for a line of ``proc``'s stdout that matches ``pattern``.

    Reads the raw pipe: a buffered reader could hold the line while ``select`` waits.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + START_TIMEOUT
    pending = b""
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            seen.append(line)
            if match := pattern.search(line):
                return match
    detail = "\n".join(seen) + (log.read_text()[-3000:] if log and log.exists() else "")
    raise RuntimeError(f"{what} did not become ready:\n{detail}")


def _opensphere_argv() -> list[str]:
    script = Path(sys.executable).parent / "opensphere"
    found = str(script) if script.exists() else shutil.which("opensphere")
    if found is None:
        raise RuntimeError("the opensphere command is not installed (pip install -e .)")
    return [found]


@dataclass
class OpenSphere:
    proc: subprocess.Popen[bytes]
    grpc: str
    rest: str


def start_opensphere(children: Children, data_dir: Path) -> OpenSphere:
    """``opensphere serve`` on free loopback ports with the default SQLite store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSPHERE_")}
    env["COLUMNS"] = "300"  # one line per message, so the address line can be parsed
    log = data_dir / "server.log"
    with log.open("a") as stderr:
        proc = children.spawn([*_opensphere_argv(), "serve", "--data-dir", str(data_dir),
                               "--host", "127.0.0.1", "--grpc-port", "0", "--rest-port", "0"],
                              stderr=stderr, env=env)
    match = _read_line(proc, READY, "opensphere serve", log)
    return OpenSphere(proc, match.group(1), match.group(2))


def start_bare(children: Children, command: str, cfg: dict[str, Any]
               ) -> tuple[subprocess.Popen[bytes], int]:
    proc = children.spawn([sys.executable, str(WORKERS), command, json.dumps(cfg)])
    return proc, int(_read_line(proc, re.compile(r"READY (\d+)"), command).group(1))


def run_worker(children: Children, command: str, cfg: dict[str, Any],
               budget: float) -> dict[str, Any]:
    """Run one load generator to completion (bounded by ``budget`` seconds); its JSON result."""
    proc = children.spawn([sys.executable, str(WORKERS), command, json.dumps(cfg)],
                          stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        children.stop(proc)
        raise RuntimeError(f"{command} ran past {budget:.0f} s") from None
    children.procs.remove(proc)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"{command} failed ({proc.returncode}):\n{_tail(err.decode())}")
    if err.strip():
        print(f"  [{command} stderr] {err.decode().strip()[-500:]}", file=sys.stderr)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _tail(text: str, lines: int = 12) -> str:
    """The first distinct lines and the end of a worker's stderr: the cause is often first."""
    head = list(dict.fromkeys(text.splitlines()))[:lines]
    return "\n".join(head) + "\n...\n" + text[-2000:]


def seed(data_dir: Path, count: int) -> tuple[str, list[str]]:
    """One community with ``count`` projects, inserted straight into the SQLite file."""
    from sqlalchemy import create_engine, insert, select

    from opensphere.ids import new_id
    from opensphere.store import models as m

    engine = create_engine(f"sqlite:///{data_dir / 'opensphere.db'}")
    try:
        with engine.begin() as conn:
            org_id = conn.scalar(select(m.Organization.id))
            admin_id = conn.scalar(select(m.Subject.id))
            if org_id is None or admin_id is None:
                raise RuntimeError("the server did not bootstrap an organization and admin")
            now = m.utcnow()
            community_id = new_id("bt1")
            conn.execute(insert(m.Community.__table__), [{
                "id": community_id, "organization_id": org_id, "name": "bench",
                "description": "", "labels": {}, "billing_account_id": "",
                "created_by_id": admin_id, "created_at": now}])
            ids: set[str] = set()
            while len(ids) < count:
                ids.add(new_id("bt1"))
            ordered = sorted(ids)
            conn.execute(insert(m.Project.__table__), [{
                "id": pid, "community_id": community_id, "name": f"project-{i:06d}",
                "description": "A project seeded by bench/api.py",
                "labels": {"team": "bench", "env": "test"},
                "settings": {"commit_mode": "STANDARD", "ide": "JUPYTER_LAB"},
                "limits": {}, "created_by_id": admin_id, "created_at": now,
            } for i, pid in enumerate(ordered)])
    finally:
        engine.dispose()
    return community_id, ordered


def fetch_get(server: OpenSphere, token: str, project_id: str
              ) -> tuple[bytes, bytes, bytes, str]:
    """OpenSphere's own answers to Get: (gRPC request, gRPC reply, REST body, content type)."""
    import grpc

    from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps

    request = ps.GetProjectRequest(project_id=project_id).SerializeToString()
    with grpc.insecure_channel(server.grpc) as channel:
        reply: bytes = channel.unary_unary("/yandex.cloud.datasphere.v2.ProjectService/Get")(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
    http = urllib.request.Request(f"{server.rest}/datasphere/v2/projects/{project_id}",
                                  headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(http, timeout=30) as response:
        body = response.read()
        content_type = response.headers.get("content-type", "application/json")
    if json.loads(body).get("id") != project_id:
        raise RuntimeError(f"REST Get returned {body[:200]!r}")
    return request, reply, body, content_type


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _http_impl() -> str:
    """What uvicorn's ``http="auto"``/``loop="auto"`` resolve to here (as OpenSphere runs it)."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"http={http}, loop={loop}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def print_header(args: argparse.Namespace) -> None:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    print("OpenSphere API benchmark")
    print(f"  machine : {cores} CPU cores ({usable} usable), {platform.system()} "
          f"{platform.machine()}, Python {platform.python_version()}; load average "
          f"{_loadavg()} at start")
    print(f"  stack   : grpcio {_version('grpcio')}, protobuf {_version('protobuf')}, "
          f"uvicorn {_version('uvicorn')} ({_http_impl()}), starlette "
          f"{_version('starlette')}, SQLAlchemy {_version('sqlalchemy')}, SQLite")
    print("  method  : every server and the load generator are separate processes; OpenSphere "
          "and its bare peer are")
    print(f"            measured in alternating {min(args.slice, args.seconds):g} s slices "
          f"(A B B A ...), {args.seconds:g} s each in all, after {args.warmup:g} s of "
          "warm-up each")
    print()


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "-"


def _cpu(side: dict[str, Any]) -> str:
    return f"{side['server_cpu']:.2f} / {side['client_cpu']:.2f} / {side['other_cpu']:.2f}"


def print_get_tables(args: argparse.Namespace,
                     rows: list[tuple[str, dict[str, Any]]]) -> list[float]:
    """Throughput, CPU and single-client latency of Get; returns the OpenSphere/bare ratios."""
    ratios = []
    print(f"{'ProjectService.Get, ' + str(args.concurrency) + ' calls in flight':<40}"
          f"{'OpenSphere':>12}{'bare':>12}{'ratio':>10}   slices min-max (OpenSphere | bare)")
    for name, result in rows:
        ours, bare = result["loaded"]["opensphere"], result["loaded"]["bare"]
        ratio = ours["rps"] / bare["rps"] if bare["rps"] else float("nan")
        ratios.append(ratio)
        spread = " | ".join(f"{min(x['slice_rps']):,.0f}-{max(x['slice_rps']):,.0f}"
                            for x in (ours, bare))
        print(f"{name:<40}{ours['rps']:>8,.0f} rps{bare['rps']:>8,.0f} rps{ratio:>10.3f}   "
              f"{spread}")
    print("  CPU cores busy while measuring: server / load generator / rest of the machine")
    for name, result in rows:
        ours, bare = result["loaded"]["opensphere"], result["loaded"]["bare"]
        print(f"  {name.split()[0]:<6}OpenSphere {_cpu(ours)}      bare {_cpu(bare)}")
    print()
    print(f"{'ProjectService.Get, one client':<40}{'OpenSphere':>18}{'bare':>18}{'added':>10}")
    print(f"{'latency in ms, p50 (p95)':<40}")
    for name, result in rows:
        ours, bare = result["single"]["opensphere"], result["single"]["bare"]
        added = (ours["p50"] - bare["p50"]) if ours["p50"] and bare["p50"] else None
        print(f"{name:<40}{_ms(ours['p50']) + ' (' + _ms(ours['p95']) + ')':>18}"
              f"{_ms(bare['p50']) + ' (' + _ms(bare['p95']) + ')':>18}"
              f"{'+' + _ms(added) if added is not None else '-':>10}")
    _notes(rows)
    print()
    return ratios


def _notes(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Point at what distorts the figures above, so that nobody reads them naively."""
    busiest = max(side["other_cpu"] for _, r in rows for side in r["loaded"].values())
    if busiest > 0.25:
        print(f"  note: other processes kept up to {busiest:.2f} cores busy while measuring; "
              "absolute rps are depressed, the interleaved ratios much less so")
    cores = os.cpu_count() or 1
    for name, result in rows:
        bare = result["loaded"]["bare"]
        used = bare["server_cpu"] + bare["client_cpu"] + bare["other_cpu"]
        if bare["client_cpu"] > 0.85 or used > 0.9 * cores:
            print(f"  note: {name.split()[0]} bare peer: server, load generator and the rest "
                  f"kept {used:.2f} of {cores} cores busy; that rps is a floor of the stack's "
                  "ceiling, so the ratio is a ceiling")
    grpc_p50 = rows[0][1]["single"]["opensphere"]["p50"]
    rest_p50 = rows[1][1]["single"]["opensphere"]["p50"]
    bare_rest_p50 = rows[1][1]["single"]["bare"]["p50"]
    if grpc_p50 and rest_p50 and bare_rest_p50 and rest_p50 - max(grpc_p50, bare_rest_p50) > 0.03:
        print(f"  note: OpenSphere's REST takes {(rest_p50 - grpc_p50) * 1000:.0f} ms longer per "
              "call than its gRPC: the mark of Nagle's algorithm")
        print("        meeting delayed ACKs, i.e. TCP_NODELAY off on its REST connections "
              "(the bare peer has it on)")


def print_list_table(result: dict[str, Any], offsets: list[int], projects: int) -> float:
    """Latency per offset; returns the deepest/first p50 ratio."""
    print(f"ProjectService.List, pageSize {PAGE_SIZE}, {projects:,} projects in one community "
          f"(gRPC, one client, offsets round-robin)")
    print(f"{'offset':>10}{'p50 ms':>10}{'p95 ms':>10}{'samples':>9}")
    p50s: list[float] = []
    for offset in offsets:
        samples = result["samples"][str(offset)]
        p50 = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[18] if len(samples) > 1 else samples[0]
        p50s.append(p50)
        print(f"{offset:>10,}{_ms(p50):>10}{_ms(p95):>10}{len(samples):>9}")
    print(f"  offsets reached by walking next_page_token: {result['walk_pages']} pages "
          f"(pageSize up to {WALK_PAGE_SIZE}) in {result['walk_seconds']:.1f} s")
    print()
    return p50s[-1] / p50s[0]


def list_offsets(projects: int) -> list[int]:
    """~0, 10 %, 50 %, 90 % and the last full page, as multiples of the page size."""
    raw = [0, projects // 10, projects // 2, projects * 9 // 10, projects - PAGE_SIZE]
    return sorted({o - o % PAGE_SIZE for o in raw})


def run(args: argparse.Namespace, children: Children, data_dir: Path) -> int:
    started = time.perf_counter()
    print_header(args)
    server = start_opensphere(children, data_dir)  # first start: migrate, admin, organization
    token = (data_dir / "admin.token").read_text().strip()
    children.stop(server.proc)
    t0 = time.perf_counter()
    community_id, ids = seed(data_dir, args.projects)
    print(f"seeded {len(ids):,} projects into one community in {time.perf_counter() - t0:.1f} s")
    server = start_opensphere(children, data_dir)
    project_id = ids[len(ids) // 2]
    request, reply, body, content_type = fetch_get(server, token, project_id)
    print(f"Get {project_id}: {len(reply)} bytes over gRPC, {len(body)} bytes of JSON over REST")
    print()

    bare_grpc, grpc_port = start_bare(children, "bare-grpc", {"payload_hex": reply.hex()})
    bare_rest, rest_port = start_bare(children, "bare-rest", {
        "body_hex": body.hex(), "content_type": content_type})
    load = {"warmup": args.warmup, "seconds": args.seconds, "slice": args.slice,
            "single_seconds": min(2.0, args.seconds), "concurrency": args.concurrency,
            "token": token}
    pids = {"opensphere": server.proc.pid}
    budget = 4 * (args.warmup + args.seconds) + 120
    grpc_result = run_worker(children, "load-grpc", {
        **load, "request_hex": request.hex(), "payload_hex": reply.hex(),
        "channels": args.channels,
        "targets": {"opensphere": server.grpc, "bare": f"127.0.0.1:{grpc_port}"},
        "pids": {**pids, "bare": bare_grpc.pid}}, budget)
    rest_result = run_worker(children, "load-rest", {
        **load, "path": f"/datasphere/v2/projects/{project_id}", "body_hex": body.hex(),
        "targets": {"opensphere": server.rest.removeprefix("http://"),
                    "bare": f"127.0.0.1:{rest_port}"},
        "pids": {**pids, "bare": bare_rest.pid}}, budget)
    children.stop(bare_grpc)
    children.stop(bare_rest)

    offsets = list_offsets(args.projects)
    listing = run_worker(children, "list-latency", {
        "target": server.grpc, "token": token, "community_id": community_id,
        "page_size": PAGE_SIZE, "walk_page_size": WALK_PAGE_SIZE, "offsets": offsets,
        "expected_first_ids": [ids[o] for o in offsets], "warmup": args.warmup,
        "seconds": args.seconds, "max_rounds": 1_000_000,
    }, args.warmup + args.seconds * len(offsets) + 180)
    children.stop(server.proc)

    rows = [("gRPC ProjectService/Get", grpc_result),
            ("REST GET /datasphere/v2/projects/{id}", rest_result)]
    ratios = print_get_tables(args, rows)
    deep_ratio = print_list_table(listing, offsets, args.projects)
    errors = sum(side["errors"] for _, result in rows for phase in result.values()
                 for side in phase.values())
    print("Summary")
    for label, ratio in zip(("gRPC", "REST"), ratios, strict=True):
        print(f"  {label} Get ratio OpenSphere/bare: {ratio:.3f}")
    print(f"  List p50 ratio deepest/first: {deep_ratio:.2f}  (offset {offsets[-1]:,} vs 0)")
    print(f"  failed calls: {errors}; load average {_loadavg()} at the end; "
          f"run time {time.perf_counter() - started:.0f} s")
    return 1 if errors else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="measured seconds per row (default 5; 1 with --quick)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="warm-up seconds before each measurement (default 1; 0.5 quick)")
    parser.add_argument("--projects", type=int, default=None,
                        help="projects in the listed community (default 100000; 5000 quick)")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    parser.add_argument("--channels", type=int, default=1, help="gRPC channels to share them")
    parser.add_argument("--slice", type=float, default=1.0,
                        help="seconds per alternating measurement slice")
    parser.add_argument("--quick", action="store_true", help="a short run for smoke tests")
    args = parser.parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.projects = args.projects if args.projects is not None else (
        5_000 if args.quick else 100_000)
    if args.projects < 10 * PAGE_SIZE:
        parser.error(f"--projects must be at least {10 * PAGE_SIZE}")
    if min(args.seconds, args.slice, args.concurrency, args.channels) <= 0 or args.warmup < 0:
        parser.error("--seconds, --slice, --concurrency and --channels must be positive")
    return args


def run_guarded(run_fn: Callable[[argparse.Namespace, Children, Path], int],
                args: argparse.Namespace, prefix: str) -> int:
    """Run a benchmark in a temporary folder; every child process is stopped however it
    ends (Ctrl-C and SIGTERM included, even where SIGINT was inherited ignored)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    children = Children()
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            try:
                return run_fn(args, children, Path(tmp))
            finally:
                children.close()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run_guarded(run, parse_args(argv), "opensphere-bench-")


if __name__ == "__main__":
    sys.exit(main())
