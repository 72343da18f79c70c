"""How long ``ProjectService.Open`` takes to a usable IDE, against a bare ``jupyter lab``.

Run: ``.venv/bin/python bench/ide.py [--repeat N] [--quick]``.

Usable means: the Open operation is done, and the Lab's main page and ``/api/kernelspecs``
have loaded through the gateway with the cookie the session token bought (as a browser
would, following the project URL). Measured for a cold open (a project whose IDE is not
running) and a warm one (reopening it), over a few repetitions. The peer is a bare
``python -m jupyterlab`` on a free port, timed from its start to the same two pages loaded
with its token; peer and cold opens alternate so that load from elsewhere hits both alike,
after one untimed peer start that leaves both with compiled imports in the page cache.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from api import Children, start_opensphere

from opensphere.client import Client, Connection
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.datasphere.v2.community_pb2 import Community
from opensphere.proto_gen.yandex.cloud.datasphere.v2.project_pb2 import Project

POLL = 0.01
START_TIMEOUT = 120.0


def _unpack(packed: object, message: object) -> object:
    packed.Unpack(message)  # type: ignore[attr-defined]
    return message


def _usable(http: httpx.Client, lab_url: str, **params: str) -> None:
    """The Lab's main page and kernelspecs, both answered 200."""
    for path in ("lab", "api/kernelspecs"):
        answer = http.get(lab_url + path, params=params or None, follow_redirects=True)
        answer.raise_for_status()


def time_open(client: Client, project_id: str) -> float:
    start = time.perf_counter()
    operation = client.wait(client.call("ProjectService.Open", {"projectId": project_id}),
                            timeout=START_TIMEOUT, poll=POLL)  # type: ignore[arg-type]
    if operation.HasField("error"):
        raise RuntimeError(f"Open failed: {operation.error}")
    response = _unpack(operation.response, ps.OpenProjectResponse())
    with httpx.Client(trust_env=False) as http:
        entered = http.get(response.project_url,  # type: ignore[attr-defined]
                           params={"sessionToken": response.session_token})  # type: ignore[attr-defined]
        if entered.status_code != 303:
            raise RuntimeError(f"the session token was refused: {entered.status_code}")
        _usable(http, response.project_url)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_bare_lab(children: Children, root: Path) -> float:
    """``python -m jupyterlab`` from start to the same two pages answered."""
    port, token = _free_port(), secrets.token_hex(24)
    # OpenSphere's Lab does not inherit PYTHONDONTWRITEBYTECODE (its environment is rebuilt
    # from a short list); with it the peer would compile every module on every start.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["JUPYTER_TOKEN"] = token
    start = time.perf_counter()
    proc = children.spawn([sys.executable, "-m", "jupyterlab", "--no-browser",
                           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                           f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True"],
                          stderr=subprocess.DEVNULL, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        with httpx.Client(trust_env=False,
                          headers={"Authorization": f"token {token}"}) as http:
            while time.perf_counter() - start < START_TIMEOUT:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
                try:
                    _usable(http, url)
                    return time.perf_counter() - start
                except httpx.HTTPError:
                    time.sleep(POLL)
        raise RuntimeError("jupyter lab did not answer")
    finally:
        children.stop(proc)


def _project(client: Client, community_id: str, n: int) -> str:
    operation = client.wait(client.call("ProjectService.Create", {  # type: ignore[arg-type]
        "communityId": community_id, "name": f"bench-ide-{n}"}))
    return str(_unpack(operation.response, Project()).id)  # type: ignore[attr-defined]


def _stats(label: str, values: list[float]) -> str:
    return (f"  {label:<28} median {statistics.median(values):6.2f} s   "
            f"min {min(values):6.2f} s   max {max(values):6.2f} s   (n={len(values)})")


def run(repeat: int) -> None:
    print("OpenSphere IDE benchmark: ProjectService.Open to a usable JupyterLab")
    print(f"  machine : {os.cpu_count()} CPU cores; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
    children = Children()
    try:
        with tempfile.TemporaryDirectory(prefix="opensphere-bench-ide-") as tmp:
            data_dir, root = Path(tmp) / "data", Path(tmp) / "bare"
            data_dir.mkdir()
            root.mkdir()
            server = start_opensphere(children, data_dir)
            token = (data_dir / "admin.token").read_text().strip()
            client = Client(Connection(address=server.grpc, token=token))
            org = client.call("OrganizationService.List").organizations[0].id  # type: ignore[attr-defined]
            community = client.wait(client.call("CommunityService.Create", {  # type: ignore[arg-type]
                "organizationId": org, "name": "bench-ide"}))
            community_id = _unpack(community.response, Community()).id  # type: ignore[attr-defined]
            time_bare_lab(children, root)  # untimed: imports compiled and in the page cache
            cold, warm, bare = [], [], []
            for n in range(repeat):
                bare.append(time_bare_lab(children, root))
                project_id = _project(client, community_id, n)
                cold.append(time_open(client, project_id))
                warm.extend(time_open(client, project_id) for _ in range(3))
                print(f"  run {n + 1}/{repeat}: bare {bare[-1]:.2f} s, cold {cold[-1]:.2f} s, "
                      f"warm {warm[-1]:.3f} s", flush=True)
            client.close()
            children.stop(server.proc, timeout=60)
    finally:
        children.close()
    print("Time to a usable IDE (Open done + main page + /api/kernelspecs via the gateway):")
    print(_stats("bare jupyter lab (peer)", bare))
    print(_stats("OpenSphere cold open", cold))
    print(_stats("OpenSphere warm reopen", warm))
    print(f"Cold open ratio OpenSphere/bare: "
          f"{statistics.median(cold) / statistics.median(bare):.2f}")
    print(f"Warm reopen ratio OpenSphere/bare: "
          f"{statistics.median(warm) / statistics.median(bare):.3f}")
    print(f"  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold opens (and bare starts)")
    parser.add_argument("--quick", action="store_true", help="one repetition: a smoke run")
    args = parser.parse_args(argv)
    run(1 if args.quick else args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
