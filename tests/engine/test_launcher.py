"""What the local launcher enforces: GPUs, CPUs, environment, private files and sockets,
clean exit."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import nbformat
import pytest
import zmq
from nbformat.v4 import new_code_cell, new_notebook

from opensphere.engine import SPECS, ExecutionEngine, LocalLauncher, RunRequest, RunStatus
from opensphere.engine.kernel import Kernel

PROBE = (
    "import os\npid = os.getpid()\ncores = sorted(os.sched_getaffinity(0))\n"
    "gpus = os.environ['CUDA_VISIBLE_DEVICES']\nthreads = os.environ['OMP_NUM_THREADS']\n"
    "secret = os.environ.get('OPENSPHERE_TEST_SECRET')\ncwd = os.getcwd()"
)


async def test_a_gpu_kernel_gets_its_devices_and_nothing_of_the_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSPHERE_TEST_SECRET", "database password")
    launcher = LocalLauncher(gpu_ids=["0", "1"])
    engine = ExecutionEngine(launcher=launcher, pool_size=0)
    await engine.start()
    (tmp_path / "sub").mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell(PROBE)]), tmp_path / "sub" / "probe.ipynb")
    request = RunRequest(
        run_id=uuid.uuid4().hex,
        project_id="gpu",
        project_dir=tmp_path,
        notebook_path="sub/probe.ipynb",
        spec=SPECS["g1.1"],
        output_variable_names=["pid", "cores", "gpus", "threads", "secret", "cwd"],
    )
    try:
        result = await asyncio.wait_for(engine.execute(request), 60)
        assert result.status == RunStatus.OK, result.error
        outputs = result.output_variables
        assert outputs["gpus"] == "0"
        expected_cores = min(SPECS["g1.1"].cpus, len(os.sched_getaffinity(0)))
        assert len(outputs["cores"]) == expected_cores
        assert outputs["threads"] == str(expected_cores)
        assert outputs["secret"] is None
        assert outputs["cwd"] == str((tmp_path / "sub").resolve())

        runtime = launcher.runtime_dir
        assert not runtime.stat().st_mode & 0o077
        files = list(runtime.iterdir())
        assert any(path.suffix == ".json" for path in files)
        assert all(not path.stat().st_mode & 0o077 for path in files if path.is_file())
    finally:
        await engine.close()

    with pytest.raises(ProcessLookupError):
        os.kill(outputs["pid"], 0)
    assert not runtime.exists()


async def test_the_kernels_run_socket_takes_only_runs_signed_with_its_key(
    tmp_path: Path,
) -> None:
    launcher = LocalLauncher()
    kernel = await Kernel.start(launcher, cwd=tmp_path, env={}, spec=SPECS["c1.4"])
    forger = zmq.Context.instance().socket(zmq.PUSH)
    try:
        [socket] = launcher.runtime_dir.glob("*.runs")
        forger.connect(f"ipc://{socket}")
        payload = json.dumps({"id": "forged", "env": {}, "cwd": None, "names": [],
                              "cells": [[0, f"open({str(tmp_path / 'forged')!r}, 'w')"]]})
        forger.send_multipart([b"0" * 64, payload.encode()])  # a wrong signature
        forger.send_multipart([payload.encode()])  # no signature at all
        await asyncio.sleep(1.0)  # both reach the kernel, idle, long before the next run

        outcome = await asyncio.wait_for(kernel.run(
            {"env": {}, "cwd": None, "cells": [[0, "answer = 42"]], "names": ["answer"]},
            lambda message: None), 60)
        assert outcome["outputs"] == {"answer": 42}
        assert not (tmp_path / "forged").exists()
    finally:
        forger.close(linger=0)
        await kernel.shutdown()
        await launcher.close()
