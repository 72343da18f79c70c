"""What the local launcher enforces: GPUs, CPUs, environment, private files, clean exit."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from opensphere.engine import SPECS, ExecutionEngine, LocalLauncher, RunRequest, RunStatus

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
