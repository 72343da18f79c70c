"""Kernels started ahead of need, so a notebook's first run does not wait for one to boot."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import deque
from pathlib import Path

from opensphere.engine.background import Background
from opensphere.engine.kernel import Kernel
from opensphere.engine.launcher import KernelLauncher
from opensphere.engine.specs import Spec

log = logging.getLogger(__name__)

# A kernel booting competes for CPU with the run that just took a pooled one.
REFILL_DELAY = 1.0


class KernelPool:
    """Keeps ``size`` kernels of one spec starting or ready, refilled shortly after a take.

    A pooled kernel waits in a neutral folder and moves to its notebook's folder on
    its first run. Runs with another spec start a kernel of their own.
    """

    def __init__(
        self,
        launcher: KernelLauncher,
        *,
        spec: Spec,
        size: int,
        env: dict[str, str],
        background: Background,
    ) -> None:
        self._launcher = launcher
        self._spec = spec
        self._size = size
        self._env = env
        self._background = background
        self._home = Path(tempfile.gettempdir())
        self._starting: deque[asyncio.Task[Kernel]] = deque()
        self._closed = False

    def fill(self) -> None:
        while not self._closed and len(self._starting) < self._size:
            self._starting.append(asyncio.create_task(self._start(self._spec, self._home)))

    async def acquire(self, spec: Spec, cwd: Path) -> Kernel:
        """A kernel for ``spec``: a pooled one if it fits, else a new one started in ``cwd``."""
        if spec == self._spec and self._starting:
            ready = [task for task in self._starting if task.done()]
            task = ready[0] if ready else self._starting[0]
            self._starting.remove(task)
            asyncio.get_running_loop().call_later(REFILL_DELAY, self.fill)
            try:
                kernel = await task
            except Exception:
                log.warning("a pooled kernel failed to start", exc_info=True)
            else:
                if kernel.usable:
                    return kernel
                self._background.spawn(kernel.shutdown())
        return await self._start(spec, cwd)

    async def close(self) -> None:
        self._closed = True
        tasks, self._starting = list(self._starting), deque()
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Kernel):
                await outcome.shutdown()

    async def _start(self, spec: Spec, cwd: Path) -> Kernel:
        return await Kernel.start(self._launcher, cwd=cwd, env=dict(self._env), spec=spec)
