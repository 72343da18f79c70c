"""One JupyterLab server process for one project, on loopback, behind its own random token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# The server's environment minus its secrets: only what a Lab and its kernels need to run.
_INHERITED = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM")
# The news and update checks call out of the machine, and ask the user about it first.
_PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


class LabError(Exception):
    """The Lab did not come up; the message says why, with the end of its log."""


def base_path(project_id: str) -> str:
    """The URL path the Lab serves, identical on the gateway so no URL is rewritten."""
    return f"/ide/{project_id}/"


@dataclass
class Lab:
    project_id: str
    port: int
    token: str
    process: asyncio.subprocess.Process
    client: httpx.AsyncClient  # talks to this Lab only, its token already in the headers
    state_dir: Path
    idle_timeout: float
    last_activity: float = field(default_factory=time.monotonic)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.returncode is None

    def touch(self) -> None:
        """Record proxied traffic: it is what keeps an IDE from being stopped as idle."""
        self.last_activity = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_activity

    async def healthy(self, timeout: float = 10.0) -> bool:
        """Running and answering its API within ``timeout`` (generous by default: a Lab
        judged unhealthy is replaced, and its kernels with it)."""
        if not self.alive():
            return False
        try:
            response = await self.client.get("api/status", timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def busy(self) -> bool:
        """Whether any kernel is executing (an unreachable Lab is not busy)."""
        try:
            response = await self.client.get("api/kernels", timeout=10.0)
            response.raise_for_status()
        except httpx.HTTPError:
            return False
        return any(k.get("execution_state") == "busy" for k in response.json())

    async def stop(self) -> None:
        """SIGTERM lets the Lab shut its kernels and terminals down; whatever is left of its
        process group after ``STOP_TIMEOUT`` is killed."""
        if self.alive():
            self.process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        await self.client.aclose()
        shutil.rmtree(self.state_dir / "runtime", ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(token: str, state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith("LC_")}
    # The server's own environment first on PATH: `pip` and `jupyter` in a terminal or a
    # notebook then reach the packages the Lab runs with.
    env["PATH"] = os.pathsep.join(
        p for p in (str(Path(sys.executable).parent), os.environ.get("PATH", "")) if p)
    env["JUPYTER_TOKEN"] = token
    # Per project: Lab settings and workspaces (open tabs) belong to the project, and the
    # runtime files (which repeat the token) stay in the private state folder.
    env["JUPYTER_CONFIG_DIR"] = str(state_dir / "config")
    env["JUPYTER_RUNTIME_DIR"] = str(state_dir / "runtime")
    return env


def _argv(project_id: str, port: int, root: Path) -> list[str]:
    return [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.base_url={base_path(project_id)}", f"--ServerApp.root_dir={root}",
        # OpenSphere decides when a Lab stops, and its checks already ran at the gateway.
        "--ServerApp.quit_button=False", "--ServerApp.allow_root=True",
    ]


@dataclass(frozen=True)
class Allocation:
    """What a Lab needs before it starts: its private folder, a port and a token."""

    project_id: str
    state_dir: Path
    port: int
    token: str


def allocate(project_id: str, state_dir: Path) -> Allocation:
    """The Lab's folders (settings kept, runtime files private), a free port, a new token."""
    for sub in ("config/labconfig", "runtime"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    (state_dir / "config/labconfig/page_config.json").write_text(json.dumps(_PAGE_CONFIG))
    return Allocation(project_id, state_dir, _free_port(), secrets.token_hex(24))


async def start(alloc: Allocation, root: Path, idle_timeout: float) -> Lab:
    """Start a Lab serving ``root`` and wait until its API answers."""
    with (alloc.state_dir / "lab.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *_argv(alloc.project_id, alloc.port, root), stdin=asyncio.subprocess.DEVNULL,
            stdout=log, stderr=asyncio.subprocess.STDOUT,
            env=_environment(alloc.token, alloc.state_dir), cwd=root, start_new_session=True)
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{alloc.port}{base_path(alloc.project_id)}",
        headers={"Authorization": f"token {alloc.token}"}, trust_env=False,
        timeout=httpx.Timeout(30.0, read=300.0), limits=httpx.Limits(max_connections=64))
    lab = Lab(alloc.project_id, alloc.port, alloc.token, process, client, alloc.state_dir,
              idle_timeout)
    try:
        await _wait_ready(lab)
    except BaseException:
        await lab.stop()
        raise
    lab.touch()  # idle from now on, not from before the start
    return lab


async def _wait_ready(lab: Lab) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not lab.alive():
            raise LabError(f"JupyterLab exited with code {lab.process.returncode} "
                           f"before it answered: {_log_tail(lab.state_dir)}")
        if await lab.healthy():
            return
        await asyncio.sleep(0.05)
    raise LabError(f"JupyterLab did not answer within {START_TIMEOUT:.0f} s: "
                   f"{_log_tail(lab.state_dir)}")


def _log_tail(state_dir: Path, lines: int = 5) -> str:
    text = (state_dir / "lab.log").read_text(errors="replace")
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
