"""Where kernels run: one interface, with the implementation chosen by configuration.

Like JupyterHub's Spawner, the engine asks a ``KernelLauncher`` for a kernel that
honours a spec and never cares how it was started. ``LocalLauncher`` starts local
processes; sandboxed and cluster launchers plug in the same way.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

from opensphere.engine.specs import Spec

GIB = 1 << 30
# The venv's own interpreter, whatever kernelspecs the machine has installed. History
# stays in memory: notebooks still have In/Out, but no code lands in the server
# account's home and kernels do not contend for one SQLite file. ipykernel sleeps half a
# millisecond before each execute reply so that clients see a cell's output before its
# reply; the engine waits for the kernel's idle status, which follows every output on
# IOPub, so the sleep only delays it.
KERNEL_ARGV = [
    sys.executable,
    "-m",
    "ipykernel_launcher",
    "-f",
    "{connection_file}",
    "--HistoryManager.hist_file=:memory:",
    "--IPythonKernel._execute_sleep=0",
]
# Numeric libraries size their thread pools by the machine, not by the affinity mask.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class InsufficientGpus(ValueError):
    """The spec asks for more GPUs than this machine has."""


class KernelLauncher:
    """Starts and stops kernels for specs: the engine's only way to get one."""

    async def check(self, spec: Spec) -> None:
        """Raise if ``spec`` can never run here, so a run fails before it is queued."""

    async def launch(self, *, cwd: Path, env: dict[str, str], spec: Spec) -> AsyncKernelManager:
        """Start a kernel in ``cwd`` with exactly ``env``, held to what ``spec`` allows."""
        raise NotImplementedError

    async def stop(self, manager: AsyncKernelManager) -> None:
        """Stop a kernel this launcher started and release what it held."""
        await manager.shutdown_kernel(now=True)

    async def close(self) -> None:
        """Release the launcher's own resources once its kernels are stopped."""


class _VenvPython(KernelSpecManager):
    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(argv=KERNEL_ARGV, display_name="Python 3", language="python")


class LocalLauncher(KernelLauncher):
    """Kernels as local processes, limited inside the child before it runs the kernel.

    Applies CPU affinity (``spec.cpus`` cores, rotated so kernels spread over the
    machine), an address-space limit of ``spec.memory_gb`` (not for GPU specs: CUDA
    reserves far more address space than it uses), and ``CUDA_VISIBLE_DEVICES`` naming
    the least-used GPUs (empty for CPU specs). ``gpu_ids`` overrides detection with
    ``nvidia-smi -L``. Connection files and IPC sockets live in a private directory,
    so other local users can neither read a kernel's key nor connect to it.
    """

    def __init__(self, *, gpu_ids: Sequence[str] | None = None) -> None:
        self._gpu_ids = list(gpu_ids) if gpu_ids is not None else None
        self._gpu_load: Counter[str] = Counter()
        self._gpus_of: dict[str, list[str]] = {}
        self._cpus = sorted(os.sched_getaffinity(0))
        self._next_cpu = 0
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="opensphere-kernels-"))

    async def check(self, spec: Spec) -> None:
        if spec.gpus and spec.gpus > (available := len(await self._gpus())):
            raise InsufficientGpus(
                f"spec {spec.name} needs {spec.gpus} GPU(s); this machine has {available}"
            )

    async def launch(self, *, cwd: Path, env: dict[str, str], spec: Spec) -> AsyncKernelManager:
        await self.check(spec)
        kernel_id = uuid.uuid4().hex
        cpus = self._take_cpus(spec.cpus)
        env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(self._take_gpus(kernel_id, spec.gpus))}
        for name in _THREAD_VARS:
            env.setdefault(name, str(len(cpus)))
        manager = AsyncKernelManager(
            kernel_spec_manager=_VenvPython(),
            transport="ipc",
            ip=str(self.runtime_dir / kernel_id),
            connection_file=str(self.runtime_dir / f"{kernel_id}.json"),
        )
        memory = None if spec.gpus else spec.memory_gb * GIB
        try:
            await manager.start_kernel(
                kernel_id=kernel_id, cwd=str(cwd), env=env, preexec_fn=_limits(cpus, memory)
            )
        except BaseException:
            self._release(kernel_id)
            raise
        return manager

    async def stop(self, manager: AsyncKernelManager) -> None:
        try:
            await manager.shutdown_kernel(now=True)
        finally:
            self._release(manager.kernel_id)

    async def close(self) -> None:
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    async def _gpus(self) -> list[str]:
        if self._gpu_ids is None:
            self._gpu_ids = await _detect_gpus()
        return self._gpu_ids

    def _take_cpus(self, count: int) -> list[int]:
        if count >= len(self._cpus):
            return self._cpus
        start = self._next_cpu
        self._next_cpu = (start + count) % len(self._cpus)
        return [self._cpus[(start + i) % len(self._cpus)] for i in range(count)]

    def _take_gpus(self, kernel_id: str, count: int) -> list[str]:
        if not count:
            return []
        ids = self._gpu_ids or []
        chosen = sorted(ids, key=lambda gpu: (self._gpu_load[gpu], ids.index(gpu)))[:count]
        self._gpu_load.update(chosen)
        self._gpus_of[kernel_id] = chosen
        return chosen

    def _release(self, kernel_id: str) -> None:
        self._gpu_load.subtract(self._gpus_of.pop(kernel_id, []))


def _limits(cpus: list[int], memory_bytes: int | None) -> Callable[[], None]:
    """The hook Popen runs in the forked child only: the server itself is never limited."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if memory_bytes is not None and hard != resource.RLIM_INFINITY:
        memory_bytes = min(memory_bytes, hard)

    def apply() -> None:
        os.sched_setaffinity(0, cpus)
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return apply


async def _detect_gpus() -> list[str]:
    """GPU indices from ``nvidia-smi -L``; none when the tool is missing or fails."""
    try:
        process = await asyncio.create_subprocess_exec(
            "nvidia-smi",
            "-L",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return []
    listing, _ = await process.communicate()
    if process.returncode != 0:
        return []
    lines = listing.decode(errors="replace").splitlines()
    return [line.split(":", 1)[0].split()[1] for line in lines if line.startswith("GPU ")]
