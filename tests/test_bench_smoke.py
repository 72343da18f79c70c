"""``bench/api.py --quick`` and ``bench/execute.py --quick`` run end to end: servers and
kernels start, every measurement completes.

Timings are not asserted: they depend on the machine. This only keeps the benchmark working.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATIO_LINES = (
    "gRPC Get ratio OpenSphere/bare:",
    "REST Get ratio OpenSphere/bare:",
    "List p50 ratio deepest/first:",
)
EXECUTE_LINES = (
    "warm Execute p50 / bare kernel p50, gRPC:",
    "warm Execute p50 / bare kernel p50, REST:",
    "cold first run p50 (s):",
    "papermill warm / Execute warm, gRPC:",
)


def test_bench_quick_prints_ratios() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "api.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    for label in RATIO_LINES:
        assert re.search(re.escape(label) + r" \d+\.\d+", proc.stdout), proc.stdout


def test_execute_bench_quick_prints_ratios() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "execute.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    for label in EXECUTE_LINES:
        assert re.search(re.escape(label) + r" \d+\.\d+", proc.stdout), proc.stdout
