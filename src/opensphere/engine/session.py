"""One notebook's kernel, and its runs executed one at a time in the order they came.

The kernel's state outlives runs until the session sits idle for the latest run's
``idle_timeout``. A kernel that died, or was abandoned after an interrupt failed, is
replaced on the next run (its state is lost, as in Jupyter).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from opensphere.engine.background import Background
from opensphere.engine.kernel import HELPER, Kernel, KernelDied
from opensphere.engine.pool import KernelPool
from opensphere.engine.run import RunError, RunStatus
from opensphere.engine.runner import Run, RunStopped

log = logging.getLogger(__name__)


class KernelSession:
    """The kernel of one (project, notebook) and the runs waiting for it."""

    def __init__(
        self,
        pool: KernelPool,
        background: Background,
        on_idle: Callable[[KernelSession], None],
    ) -> None:
        self._pool = pool
        self._background = background
        self._on_idle = on_idle
        self._queue: deque[Run] = deque()
        self._wakeup = asyncio.Event()
        self._idle_timeout = 1800.0
        self._kernel: asyncio.Task[Kernel] | None = None
        self._current: Run | None = None
        self._worker = asyncio.create_task(self._work())

    def submit(self, run: Run) -> None:
        self._queue.append(run)
        self._idle_timeout = run.request.idle_timeout
        self._wakeup.set()

    async def variables(self, names: list[str] | None) -> dict[str, Any] | None:
        """The live kernel's variables, or None when it has none running."""
        kernel = self._live_kernel()
        if kernel is None:
            return None
        try:
            return await kernel.evaluate(f"__import__({HELPER!r}).variables({names!r})")
        except KernelDied:
            return None

    async def close(self) -> None:
        """Abort the queued and running runs and stop the kernel."""
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        for run in (self._current, *self._queue):
            if run is not None:
                run.finish(RunStatus.ABORTED, RunError("the engine is shutting down"))
        await self._release_kernel()

    async def _work(self) -> None:
        while True:
            while self._queue:
                run = self._queue.popleft()
                if not run.result.done():
                    self._current = run
                    try:
                        await self._serve(run)
                    except Exception as error:
                        log.exception("run %s failed inside the engine", run.request.run_id)
                        run.finish(RunStatus.ERROR, RunError(f"internal error: {error}"))
                    self._current = None
            self._wakeup.clear()
            try:
                async with asyncio.timeout(self._idle_timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                if not self._queue:
                    self._on_idle(self)
                    await self._release_kernel()
                    return

    async def _serve(self, run: Run) -> None:
        run.begin()
        try:
            kernel = await run.until_stopped(self._kernel_for(run))
        except RunStopped as stopped:
            run.finish(RunStatus.ABORTED, RunError(stopped.args[0]))
            return
        except Exception as error:
            log.exception("no kernel for run %s", run.request.run_id)
            run.finish(RunStatus.ERROR, RunError(f"the kernel could not start: {error}"))
            return
        await run.execute(kernel)
        if not kernel.usable:
            self._kernel = None
            self._background.spawn(kernel.shutdown())

    def _kernel_for(self, run: Run) -> asyncio.Task[Kernel]:
        if self._kernel is not None and self._kernel.done():
            kernel = self._started_kernel()
            if kernel is None or not kernel.usable or kernel.spec != run.request.spec:
                if kernel is not None:
                    self._background.spawn(kernel.shutdown())
                self._kernel = None
        if self._kernel is None:
            self._kernel = asyncio.create_task(self._pool.acquire(run.request.spec, run.cwd))
        return self._kernel

    def _live_kernel(self) -> Kernel | None:
        kernel = self._started_kernel()
        return kernel if kernel is not None and kernel.usable else None

    def _started_kernel(self) -> Kernel | None:
        task = self._kernel
        if task is None or not task.done() or task.cancelled() or task.exception():
            return None
        return task.result()

    async def _release_kernel(self) -> None:
        task, self._kernel = self._kernel, None
        if task is None:
            return
        task.cancel()
        outcome = (await asyncio.gather(task, return_exceptions=True))[0]
        if isinstance(outcome, Kernel):
            await outcome.shutdown()
