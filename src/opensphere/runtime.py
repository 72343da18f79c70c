"""The process-wide state every RPC can reach: settings, the store, the execution engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opensphere.engine.engine import ExecutionEngine
from opensphere.iam.bootstrap import bootstrap
from opensphere.iam.decisions import Decisions
from opensphere.iam.oidc import OidcVerifier
from opensphere.ide.manager import IdeManager
from opensphere.services.watch import Hub
from opensphere.settings import Settings
from opensphere.store import Database

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    engine: ExecutionEngine
    oidc: OidcVerifier | None = None
    # The IDEs of this process; set once the REST address (which IDE URLs name) is known.
    ide: IdeManager | None = None
    advertised_grpc_address: str = ""
    # Shutdown hooks of components that own processes (kernels, IDEs), run newest first.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # How to stop the work behind a running operation, by operation description.
    cancellers: dict[str, Callable[[str], bool]] = field(default_factory=dict)
    # The live events of this process's notebook runs (ExecutionService.Watch).
    watch: Hub = field(default_factory=Hub)
    # Access decisions reused while nothing they depend on changed.
    decisions: Decisions = field(default_factory=Decisions)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    async def start(cls, settings: Settings) -> tuple[Runtime, Path | None]:
        """Open and migrate the store, bootstrap identity; returns the new admin token path."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url)
        db.migrate()
        token_path = await bootstrap(db, settings.data_dir)
        oidc = None
        if settings.oidc:
            assert settings.oidc_jwks_file is not None
            oidc = OidcVerifier(settings.oidc_jwks_file, settings.oidc_issuer,
                                settings.oidc_audience)
        engine = ExecutionEngine(pool_size=settings.kernel_pool_size)
        await engine.start()
        runtime = cls(settings=settings, db=db, engine=engine, oidc=oidc)
        runtime.closers.append(engine.close)
        return runtime, token_path

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` after the RPC that started it returned; ``close`` waits for it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def every(self, seconds: float, work: Callable[[], Awaitable[object]]) -> None:
        """Run ``work`` every ``seconds`` until the runtime closes (a sweep; the caller
        runs the first one itself when it must happen at start)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await work()
                except Exception:
                    log.exception("periodic %s failed", getattr(work, "__name__", work))

        task = asyncio.create_task(loop())

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.closers.append(stop)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    def project_dir(self, project_id: str) -> Path:
        """The project's storage folder (created on first use); notebooks live here."""
        path = self.settings.data_dir / "projects" / project_id
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    async def close(self) -> None:
        for closer in reversed(self.closers):
            await closer()
        if self._tasks:  # what the closers ended still writes its outcome
            await asyncio.wait(set(self._tasks), timeout=30)
        await self.db.close()
