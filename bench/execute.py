"""What a notebook run through OpenSphere costs, next to the bare kernel and to papermill.

Run: ``.venv/bin/python bench/execute.py [--samples 50] [--cold 10] [--quick]``.

One small notebook (an import, a computation, a print; ``result`` as output variable) is
run in four ways, all in this one run:

1. Warm ``ProjectService.Execute`` against the real ``opensphere serve`` (kernel pool of 2),
   over gRPC and over REST: submit, then poll the operation only if it is not yet done.
   Samples alternate gRPC, REST and the bare kernels (A B C D D C B A ...), so load from other
   processes on a small machine hits all three alike.
2. Cold first runs: each Execute names a notebook file that never ran, so it takes a kernel
   from the pool; before each, the server and its kernels are let go quiet (pool refilled).
3. The floor: the same cells' code sent to a kernel started here with ``jupyter_client``
   and the engine's own kernel command, one execute request per cell, each waited for idle
   (as papermill and nbclient run notebooks). The same kernel given all the cells in one
   execute request is measured too: the least a client of the kernel protocol can pay per
   run. (The engine pays less: its helper takes a run without an execute request.)
4. papermill: ``papermill.execute_notebook`` in this process (after one warm-up run) and
   the ``papermill`` command, both of which start a kernel per run.

All traffic stays on 127.0.0.1; every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from _workers import _machine_busy, _proc_cpu
from api import (
    Children,
    OpenSphere,
    _loadavg,
    _ms,
    _version,
    run_guarded,
    start_opensphere,
)

NOTEBOOK = "bench.ipynb"
CELLS = (
    "import json",
    "values = [i * i for i in range(1000)]\nresult = sum(values)",
    "print(json.dumps({'result': result}))",
)
OUTPUT = "result"
ONE_REQUEST = "bare kernel, cells in one request"
EXPECTED = sum(i * i for i in range(1000))
EXECUTE_PATH = "/yandex.cloud.datasphere.v2.ProjectService/Execute"
OPERATION_GET_PATH = "/yandex.cloud.operation.OperationService/Get"
POLL = 0.005  # seconds between polls of an operation that was not done on return
QUIET_CPU = 0.02  # CPU seconds per 0.25 s window below which the server tree counts as idle
QUIET_MAX = 20.0  # seconds to wait at most for it
# On a busy machine these phases stop early (with at least 3 and 1 samples), so the whole
# run stays bounded; the tables say how many samples were taken.
COLD_BUDGET = 45.0
PAPERMILL_BUDGET = 25.0


# --- measurement helpers -----------------------------------------------------------------------


def _children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (its kernels), from /proc; empty where that is missing."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found.extend(kids)
        frontier.extend(kids)
    return found


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants."""
    return _proc_cpu(pid) + sum(_proc_cpu(p) for p in _children_of(pid))


def _own_cpu(server_pid: int) -> float:
    """CPU seconds of everything this benchmark runs: the server's tree and this process's."""
    return _tree_cpu(server_pid) + _tree_cpu(os.getpid())


def wait_quiet(pid: int, at_least: float) -> float:
    """Sleep ``at_least`` seconds, then until ``pid``'s tree is idle (its pool refilled).

    Two quiet 0.25 s windows in a row count as idle; returns the seconds waited.
    """
    started = time.perf_counter()
    time.sleep(at_least)
    quiet = 0
    while quiet < 2 and time.perf_counter() - started < QUIET_MAX:
        before = _tree_cpu(pid)
        time.sleep(0.25)
        quiet = quiet + 1 if _tree_cpu(pid) - before < QUIET_CPU else 0
    return time.perf_counter() - started


@dataclass
class Samples:
    """Latencies of one target, with the CPU it cost the server, its kernels and this client."""

    seconds: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    kernel_cpu: float = 0.0
    client_cpu: float = 0.0
    polled: int = 0

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        s = self.seconds
        return statistics.quantiles(s, n=20)[18] if len(s) > 1 else s[0]

    def per_call_ms(self, cpu: float) -> str:
        return f"{cpu / len(self.seconds) * 1000:.1f}" if self.seconds else "-"


@dataclass
class Probe:
    """What CPU to charge to a sample: the server process and the kernel processes."""

    server_pid: int | None
    kernel_pids: list[int]

    def read(self) -> tuple[float, float, float]:
        server = _proc_cpu(self.server_pid) if self.server_pid else 0.0
        return server, sum(_proc_cpu(p) for p in self.kernel_pids), time.process_time()


def measure(target: Callable[[], bool], samples: Samples, probe: Probe) -> None:
    """Time one call; CPU counters are read outside the timed window."""
    cpu0 = probe.read()
    t0 = time.perf_counter()
    polled = target()
    elapsed = time.perf_counter() - t0
    cpu1 = probe.read()
    samples.seconds.append(elapsed)
    samples.server_cpu += cpu1[0] - cpu0[0]
    samples.kernel_cpu += cpu1[1] - cpu0[1]
    samples.client_cpu += cpu1[2] - cpu0[2]
    samples.polled += polled


# --- the ways to run the notebook's cells ----------------------------------------------------


def write_notebook(path: Path) -> None:
    """The benchmark notebook; its kernelspec metadata is what papermill needs to start one."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell(source) for source in CELLS], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)


def create_project(server: OpenSphere, token: str) -> str:
    """A community and a project, created through the API as a user would."""
    from opensphere.client import Client, Connection
    from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_pb2, project_pb2

    client = Client(Connection(address=server.grpc, token=token))
    try:
        orgs: Any = client.call("OrganizationService.List")
        community, project = community_pb2.Community(), project_pb2.Project()
        client.wait(client.call("CommunityService.Create", {
            "organizationId": orgs.organizations[0].id, "name": "bench"}), timeout=30
        ).response.Unpack(community)
        client.wait(client.call("ProjectService.Create", {
            "communityId": community.id, "name": "execute-bench"}), timeout=30
        ).response.Unpack(project)
        return str(project.id)
    finally:
        client.close()


class GrpcExecute:
    """Execute over gRPC with pre-serialized requests; polls ``OperationService.Get``."""

    def __init__(self, target: str, token: str, project_id: str) -> None:
        import grpc

        self._channel = grpc.insecure_channel(target)
        self._execute = self._channel.unary_unary(EXECUTE_PATH)
        self._get = self._channel.unary_unary(OPERATION_GET_PATH)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self.project_id = project_id

    def run(self, notebook: str) -> bool:
        """Execute ``notebook`` to completion; True when the operation had to be polled."""
        from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
        from opensphere.proto_gen.yandex.cloud.operation import (
            operation_pb2,
            operation_service_pb2,
        )

        request = ps.ProjectExecutionRequest(project_id=self.project_id, notebook_id=notebook,
                                             output_variable_names=[OUTPUT])
        op = operation_pb2.Operation.FromString(self._execute(
            request.SerializeToString(), metadata=self._metadata, timeout=120))
        polled = not op.done
        get = operation_service_pb2.GetOperationRequest(operation_id=op.id).SerializeToString()
        while not op.done:
            time.sleep(POLL)
            op = operation_pb2.Operation.FromString(
                self._get(get, metadata=self._metadata, timeout=30))
        response = ps.ProjectExecutionResponse()
        if not op.response.Unpack(response) or response.execution_status != ps.OK or \
                response.output_variables[OUTPUT] != EXPECTED:
            raise RuntimeError(f"gRPC Execute of {notebook} went wrong: {op}")
        return polled

    def close(self) -> None:
        self._channel.close()


class RestExecute:
    """Execute over REST on one keep-alive connection; polls ``GET /operations/{id}``."""

    def __init__(self, base: str, token: str, project_id: str, notebook: str) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self._conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self._conn.connect()
        assert self._conn.sock is not None
        self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._path = f"/datasphere/v2/projects/{project_id}:execute"
        self._body = json.dumps({"notebookId": notebook, "outputVariableNames": [OUTPUT]}).encode()

    def _call(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        self._conn.request(method, path, body=body, headers=self._headers)
        response = self._conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"REST {method} {path}: HTTP {response.status}: {data[:300]!r}")
        result: dict[str, Any] = json.loads(data)
        return result

    def __call__(self) -> bool:
        op = self._call("POST", self._path, self._body)
        polled = not op.get("done")
        while not op.get("done"):
            time.sleep(POLL)
            op = self._call("GET", f"/operations/{op['id']}")
        response = op.get("response", {})
        if response.get("executionStatus") != "OK" or \
                response.get("outputVariables", {}).get(OUTPUT) != EXPECTED:
            raise RuntimeError(f"REST Execute went wrong: {op}")
        return polled

    def close(self) -> None:
        self._conn.close()


class BareKernel:
    """A kernel started with the engine's own command, driven with ``jupyter_client`` alone:
    one execute request per cell, or (``one_request``) one for all the cells, each run
    through IPython's ``run_cell`` as the engine's helper runs them."""

    def __init__(self, folder: Path, *, one_request: bool = False) -> None:
        from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
        from jupyter_client.manager import KernelManager

        from opensphere.engine.launcher import KERNEL_ARGV

        class _Spec(KernelSpecManager):
            def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
                return KernelSpec(argv=KERNEL_ARGV, display_name="Python 3", language="python")

        folder.mkdir(parents=True, exist_ok=True)
        self._manager = KernelManager(kernel_spec_manager=_Spec(), transport="ipc",
                                      ip=str(folder / "kernel"),
                                      connection_file=str(folder / "kernel.json"))
        self._manager.start_kernel(cwd=str(folder))
        self._client = self._manager.blocking_client()
        self._client.start_channels()
        self._client.wait_for_ready(timeout=60)
        self._one_request = one_request

    @property
    def pid(self) -> int | None:
        provisioner: Any = self._manager.provisioner
        return getattr(provisioner, "pid", None)

    def __call__(self) -> bool:
        """The cells in order, each waited for idle; the output variable rides on the last."""
        outputs: list[dict[str, Any]] = []
        reply: dict[str, Any] = {}
        requests = [f"for _cell in {list(CELLS)!r}:\n    get_ipython().run_cell(_cell, "
                    "store_history=True)"] if self._one_request else CELLS
        for i, code in enumerate(requests):
            expressions = {OUTPUT: OUTPUT} if i == len(requests) - 1 else {}
            reply = self._client.execute_interactive(
                code, user_expressions=expressions, allow_stdin=False, timeout=60,
                output_hook=outputs.append)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"the bare kernel failed: {reply['content']}")
        value = reply["content"]["user_expressions"][OUTPUT]["data"]["text/plain"]
        if int(value) != EXPECTED:
            raise RuntimeError(f"the bare kernel computed {value}")
        return False

    def close(self) -> None:
        self._client.stop_channels()
        self._manager.shutdown_kernel(now=True)


# --- phases ------------------------------------------------------------------------------------


def warm_phase(args: argparse.Namespace, targets: dict[str, Callable[[], bool]],
               probes: dict[str, Probe]) -> dict[str, Samples]:
    """Warm-up runs, then rounds that alternate the order of the targets."""
    for _ in range(args.warmup):
        for target in targets.values():
            target()
    results = {name: Samples() for name in targets}
    names = list(targets)
    for r in range(args.samples):
        for name in names if r % 2 == 0 else reversed(names):
            measure(targets[name], results[name], probes[name])
    return results


def cold_phase(args: argparse.Namespace, grpc_target: GrpcExecute, folder: Path,
               server_pid: int) -> tuple[Samples, list[float]]:
    """First runs of notebooks that never ran, each after the pool has refilled."""
    results, waits = Samples(), []
    probe = Probe(server_pid, [])
    deadline = time.perf_counter() + COLD_BUDGET
    for i in range(args.cold):
        if i >= 3 and time.perf_counter() > deadline:
            break
        name = f"cold-{i:03d}.ipynb"
        write_notebook(folder / name)
        # The pool refills REFILL_DELAY (1 s) after a take; then the new kernel must boot.
        waits.append(wait_quiet(server_pid, args.cold_gap))
        measure(partial(grpc_target.run, name), results, probe)
    return results, waits


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 (inherited by kernels) at ``path`` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def papermill_phase(args: argparse.Namespace, children: Children, folder: Path
                    ) -> tuple[list[float], list[float]]:
    """papermill in this process (one warm-up run first) and as a command."""
    import papermill

    source, output = folder / NOTEBOOK, folder / "papermill-out.ipynb"
    run = {"progress_bar": False, "cwd": str(folder)}
    in_process: list[float] = []
    deadline = time.perf_counter() + PAPERMILL_BUDGET
    with _stderr_to(folder / "papermill-kernels.log"):  # its kernels share our stderr
        for i in range(args.papermill + 1):
            if in_process and time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            papermill.execute_notebook(str(source), str(output), **run)
            if i:  # the first run loads papermill's and nbclient's lazy imports
                in_process.append(time.perf_counter() - t0)
    command = Path(sys.executable).parent / "papermill"
    cli: list[float] = []
    deadline = time.perf_counter() + PAPERMILL_BUDGET
    for _ in range(args.papermill):
        if cli and time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        proc = children.spawn([str(command), str(source), str(output), "--no-progress-bar",
                               "--cwd", str(folder)], stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=120)
        finally:
            children.stop(proc)
        cli.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"papermill failed ({proc.returncode}): {err.decode()[-2000:]}")
    return in_process, cli


# --- report ------------------------------------------------------------------------------------


def print_header(args: argparse.Namespace) -> None:
    cores = os.cpu_count()
    print("OpenSphere notebook execution benchmark")
    print(f"  machine : {cores} CPU cores, {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}; load average {_loadavg()} at start")
    print(f"  stack   : jupyter_client {_version('jupyter_client')}, ipykernel "
          f"{_version('ipykernel')}, pyzmq {_version('pyzmq')}, grpcio {_version('grpcio')}, "
          f"papermill {_version('papermill')}")
    print(f"  notebook: {len(CELLS)} code cells (import, computation, print), output "
          f"variable {OUTPUT!r}")
    print(f"  method  : {args.samples} samples per warm target after {args.warmup} warm-up runs "
          "each, interleaved (A B C D D C B A ...);")
    print(f"            {args.cold} cold first runs, each after >= {args.cold_gap:g} s and "
          f"the server's process tree going idle; papermill {args.papermill} runs each")
    print()


def print_report(warm: dict[str, Samples], cold: Samples, waits: list[float],
                 papermill_runs: tuple[list[float], list[float]], other_cpu: float) -> int:
    """The tables and the targets; returns how many targets were missed."""
    print(f"{'warm, one client':<36}{'p50 ms':>9}{'p95 ms':>9}{'polled':>8}"
          f"{'   CPU ms per run: server  kernel  client'}")
    for name, s in warm.items():
        print(f"{name:<36}{_ms(s.p50):>9}{_ms(s.p95):>9}{s.polled:>8}"
              f"{s.per_call_ms(s.server_cpu):>22}{s.per_call_ms(s.kernel_cpu):>8}"
              f"{s.per_call_ms(s.client_cpu):>8}")
    print(f"  other processes on the machine kept {max(other_cpu, 0.0):.2f} of "
          f"{os.cpu_count()} cores busy during the warm rounds")
    print()
    print(f"{'cold first run (gRPC Execute)':<36}{_ms(cold.p50):>9}{_ms(cold.p95):>9}"
          f"{cold.polled:>8}   {len(cold.seconds)} runs, waits for the pool "
          f"{min(waits):.1f}-{max(waits):.1f} s")
    in_process, cli = papermill_runs
    pm_warm, pm_cli = statistics.median(in_process), statistics.median(cli)
    print(f"{'papermill.execute_notebook (warm)':<36}{_ms(pm_warm):>9}{'':>9}{'':>8}   "
          f"{len(in_process)} runs, min-max {min(in_process):.2f}-{max(in_process):.2f} s")
    print(f"{'papermill command':<36}{_ms(pm_cli):>9}{'':>9}{'':>8}   "
          f"{len(cli)} runs, min-max {min(cli):.2f}-{max(cli):.2f} s")
    print()

    bare = warm["bare kernel (jupyter_client)"].p50
    grpc_p50, rest_p50 = warm["gRPC Execute"].p50, warm["REST Execute"].p50
    checks = [
        ("warm Execute p50 / bare kernel p50, gRPC", grpc_p50 / bare, "<= 1.5",
         grpc_p50 / bare <= 1.5),
        ("warm Execute p50 / bare kernel p50, REST", rest_p50 / bare, "<= 1.5",
         rest_p50 / bare <= 1.5),
        ("cold first run p50 (s)", cold.p50, "<= 0.3 s", cold.p50 <= 0.3),
        ("papermill warm / Execute warm, gRPC", pm_warm / grpc_p50, ">= 50x",
         pm_warm / grpc_p50 >= 50),
        ("papermill warm / Execute warm, REST", pm_warm / rest_p50, ">= 50x",
         pm_warm / rest_p50 >= 50),
    ]
    print("Summary")
    for label, value, target, met in checks:
        print(f"  {label}: {value:.3f}  (target {target}: {'met' if met else 'NOT met'})")
    print(f"  papermill command / Execute warm, gRPC: {pm_cli / grpc_p50:.1f}")
    one = warm[ONE_REQUEST].p50
    print(f"  warm Execute p50 / bare kernel with all cells in one execute request p50: "
          f"gRPC {grpc_p50 / one:.2f}, REST {rest_p50 / one:.2f}")
    return sum(not met for *_, met in checks)


def run(args: argparse.Namespace, children: Children, data_dir: Path) -> int:
    started = time.perf_counter()
    print_header(args)
    server = start_opensphere(children, data_dir)
    token = (data_dir / "admin.token").read_text().strip()
    project_id = create_project(server, token)
    folder = data_dir / "projects" / project_id  # the server's own layout for project files
    write_notebook(folder / NOTEBOOK)
    print(f"server ready; project {project_id}; waiting for its kernel pool "
          f"({wait_quiet(server.proc.pid, 1.0):.1f} s)")
    phases = {"start": time.perf_counter() - started}

    grpc_target = GrpcExecute(server.grpc, token, project_id)
    rest_target = RestExecute(server.rest, token, project_id, NOTEBOOK)
    bare = BareKernel(data_dir / "bare")
    bare_one = BareKernel(data_dir / "bare-one", one_request=True)
    try:
        grpc_target.run(NOTEBOOK)  # the notebook's session takes a pooled kernel
        wait_quiet(server.proc.pid, 1.5)  # ... and the pool refills
        # The warm session's kernel is the server's only descendant that runs cells now.
        kernels = _children_of(server.proc.pid)
        server_probe = Probe(server.proc.pid, kernels)
        targets: dict[str, Callable[[], bool]] = {
            "gRPC Execute": lambda: grpc_target.run(NOTEBOOK),
            "REST Execute": rest_target,
            "bare kernel (jupyter_client)": bare,
            ONE_REQUEST: bare_one,
        }
        probes = {"gRPC Execute": server_probe, "REST Execute": server_probe,
                  "bare kernel (jupyter_client)": Probe(None, [bare.pid] if bare.pid else []),
                  ONE_REQUEST: Probe(None, [bare_one.pid] if bare_one.pid else [])}
        t0, machine0, ours0 = time.perf_counter(), _machine_busy(), _own_cpu(server.proc.pid)
        warm = warm_phase(args, targets, probes)
        phases["warm"] = time.perf_counter() - t0
        other = ((_machine_busy() - machine0) - (_own_cpu(server.proc.pid) - ours0)) \
            / phases["warm"]
        t0 = time.perf_counter()
        cold, waits = cold_phase(args, grpc_target, folder, server.proc.pid)
        phases["cold"] = time.perf_counter() - t0
    finally:
        grpc_target.close()
        rest_target.close()
        bare.close()
        bare_one.close()
    t0 = time.perf_counter()
    children.stop(server.proc)
    phases["stop"] = time.perf_counter() - t0
    papermill_runs = papermill_phase(args, children, folder)
    phases["papermill"] = time.perf_counter() - t0 - phases["stop"]
    missed = print_report(warm, cold, waits, papermill_runs, other)
    print(f"  targets missed: {missed}; load average {_loadavg()} at the end; "
          f"run time {time.perf_counter() - started:.0f} s ("
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases.items()) + ")")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None,
                        help="measured warm runs per target (default 50; 10 with --quick)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up runs per target (default 5; 2 with --quick)")
    parser.add_argument("--cold", type=int, default=None,
                        help="cold first runs (default 10; 3 with --quick)")
    parser.add_argument("--cold-gap", type=float, default=2.0,
                        help="seconds at least between cold runs, for the pool to refill")
    parser.add_argument("--papermill", type=int, default=None,
                        help="papermill runs of each kind (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run for smoke tests")
    args = parser.parse_args(argv)
    for name, full, quick in (("samples", 50, 10), ("warmup", 5, 2), ("cold", 10, 3),
                              ("papermill", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.samples, args.cold, args.papermill) < 1 or args.warmup < 0:
        parser.error("--samples, --cold and --papermill must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_guarded(run, parse_args(argv), "opensphere-execute-bench-")


if __name__ == "__main__":
    sys.exit(main())
