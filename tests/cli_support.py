"""Driving the ``opensphere`` command in tests: a real ``serve`` process and CLI processes."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

OPENSPHERE = str(Path(sys.executable).with_name("opensphere"))
READY = re.compile(r"OpenSphere gRPC on (\S+), REST on (\S+); data in")


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any OPENSPHERE_* setting of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSPHERE_")}
    env.update(COLUMNS="300", OPENSPHERE_DATA_DIR=str(data_dir), **extra)
    return env


class ServeProcess:
    """``opensphere serve`` on free ports; a thread collects its output so the pipe never fills."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [OPENSPHERE, "serve", "--data-dir", str(data_dir), "--grpc-port", "0",
             "--rest-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(data_dir))
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.grpc_address = self._wait_ready().group(1)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self, timeout: float = 60.0) -> re.Match[str]:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"serve did not start in {timeout}s: {''.join(self.output)}")
            if line is None:
                pytest.fail(f"serve exited early: {''.join(self.output)}")
            self.output.append(line)
            if match := READY.search(line):
                return match

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, wait for the exit; the rest of the output lands in ``output``."""
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while (line := self._lines.get(timeout=timeout)) is not None:
            self.output.append(line)
        return code

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server unless a test already did."""
        if self.proc.poll() is None:
            self.stop()


@dataclass
class Cli:
    """Runs ``opensphere`` client commands against one server."""

    data_dir: Path
    address: str

    def _environment(self, env: dict[str, str]) -> dict[str, str]:
        return _env(self.data_dir, OPENSPHERE_ADDRESS=self.address, **env)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([OPENSPHERE, *args], capture_output=True, text=True,
                              env=self._environment(env), timeout=60)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """A command left running in the background; ``communicate`` collects it."""
        return subprocess.Popen([OPENSPHERE, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self._environment(env))

    def ok(self, *args: str, **env: str) -> str:
        result = self.run(*args, **env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str, **env: str) -> Any:
        """``--json`` output: the whole of stdout must be one JSON document."""
        return json.loads(self.ok(*args, "--json", **env))

    def fails(self, *args: str, **env: str) -> str:
        """A command that must fail with exit code 1, nothing on stdout and one stderr line."""
        result = self.run(*args, **env)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0]
