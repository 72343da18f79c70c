"""The execution engine: notebooks run on real Jupyter kernels, one kernel per notebook.

It knows nothing of the API, the transports or the store: the caller resolves the
project's folder, spec and timeouts, and turns a RunResult into a checkpoint and a
response.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Mapping
from typing import Any

from opensphere.engine.background import Background
from opensphere.engine.environment import kernel_environment
from opensphere.engine.inputs import environment, inject_parameters
from opensphere.engine.launcher import KernelLauncher, LocalLauncher
from opensphere.engine.notebook import cells_to_run, read, warm_up
from opensphere.engine.paths import resolve_in
from opensphere.engine.pool import KernelPool
from opensphere.engine.run import ProgressCallback, RunRequest, RunResult
from opensphere.engine.runner import Run
from opensphere.engine.session import KernelSession
from opensphere.engine.specs import DEFAULT_SPEC, SPECS, Spec

SessionKey = tuple[str, str]


class ExecutionEngine:
    """Runs notebooks: runs of one notebook in order, different notebooks side by side.

    ``pool_size`` kernels of ``pool_spec`` are kept started so first runs are fast;
    ``kernel_env`` is the environment every kernel starts with (by default a few
    harmless variables of the server's); a running cell that ignores an interrupt for
    ``interrupt_grace`` seconds costs its kernel.
    """

    def __init__(
        self,
        *,
        launcher: KernelLauncher | None = None,
        pool_size: int = 2,
        pool_spec: Spec = SPECS[DEFAULT_SPEC],
        kernel_env: Mapping[str, str] | None = None,
        interrupt_grace: float = 3.0,
    ) -> None:
        self._launcher = launcher or LocalLauncher()
        self._background = Background()
        env = dict(kernel_env) if kernel_env is not None else kernel_environment()
        self._pool = KernelPool(
            self._launcher, spec=pool_spec, size=pool_size, env=env, background=self._background
        )
        self._grace = interrupt_grace
        self._sessions: dict[SessionKey, KernelSession] = {}
        self._runs: dict[str, Run] = {}
        # Held while a run is checked and queued, so runs queue in the order they came.
        self._queueing = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        """Start filling the kernel pool (in the background) and warm up notebook reading."""
        self._pool.fill()
        await asyncio.to_thread(warm_up)

    async def close(self) -> None:
        """Abort every run and stop every kernel the engine started, the pool's included."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.close() for session in sessions))
        await self._pool.close()
        await self._background.drain()
        await self._launcher.close()

    async def execute(
        self, request: RunRequest, on_progress: ProgressCallback | None = None
    ) -> RunResult:
        """Queue the run on its notebook's session and wait for its result.

        Cancelling the caller cancels the run. Raises like ``submit``.
        """
        result = await self.submit(request, on_progress)
        try:
            return await asyncio.shield(result)
        except asyncio.CancelledError:
            self.cancel(request.run_id)
            raise

    async def submit(
        self, request: RunRequest, on_progress: ProgressCallback | None = None
    ) -> asyncio.Future[RunResult]:
        """Queue the run on its notebook's session; the future resolves with its result.

        Runs are queued in the order this method is called. Raises, without queueing,
        when the request cannot run: PathOutsideProject, FileNotFoundError,
        InvalidNotebook, InvalidInput, UnknownCell, InsufficientGpus, or ValueError for
        a run id that is already active.
        """
        if self._closed:
            raise RuntimeError("the engine is closed")
        if request.run_id in self._runs:
            raise ValueError(f"run {request.run_id!r} is already active")
        run = self._runs[request.run_id] = Run(
            request, on_progress=on_progress, interrupt_grace=self._grace
        )
        run.result.add_done_callback(lambda _: self._runs.pop(request.run_id, None))
        try:
            async with self._queueing:
                await self._prepare(run)
                self._session(request).submit(run)
        except BaseException:
            self._runs.pop(request.run_id, None)
            raise
        return run.result

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        """Abort a queued or running run (``reason`` ends up in its error); False when no
        such run is active."""
        run = self._runs.get(run_id)
        if run is None or run.result.done():
            return False
        run.stop(reason)
        return True

    async def state_variables(
        self, project_id: str, notebook_path: str, names: list[str] | None = None
    ) -> dict[str, Any] | None:
        """Variables of the notebook's live kernel (all JSON-able ones, or the named
        ones converted like outputs); None when the notebook has no live kernel."""
        session = self._sessions.get(_session_key(project_id, notebook_path))
        return None if session is None else await session.variables(names)

    async def _prepare(self, run: Run) -> None:
        request = run.request
        path = resolve_in(request.project_dir, request.notebook_path)
        notebook = await read(path)
        env = environment(request.input_variables)
        if request.cell_id is None and request.input_variables:
            inject_parameters(notebook, request.input_variables)
        cells = cells_to_run(notebook, request.cell_id)
        await self._launcher.check(request.spec)
        run.prepare(notebook, cells, cwd=path.parent, env=env)

    def _session(self, request: RunRequest) -> KernelSession:
        key = _session_key(request.project_id, request.notebook_path)
        session = self._sessions.get(key)
        if session is None:
            session = KernelSession(self._pool, self._background, on_idle=self._forget)
            self._sessions[key] = session
        return session

    def _forget(self, session: KernelSession) -> None:
        self._sessions = {
            key: value for key, value in self._sessions.items() if value is not session
        }


def _session_key(project_id: str, notebook_path: str) -> SessionKey:
    return project_id, posixpath.normpath(notebook_path)
