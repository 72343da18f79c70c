"""The Labs of one server process: at most one per project, stopped when idle or on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from enum import Enum, auto
from pathlib import Path
from typing import Any

from opensphere.ide import lab as labs
from opensphere.ide.lab import Lab

log = logging.getLogger(__name__)
# How long the idle check may sleep when no Lab is due sooner.
MAX_CHECK_INTERVAL = 60.0


class Phase(Enum):
    """What ``ensure`` is doing, named as the public ``OpenProjectStatus`` values."""

    CLOSING_IDE = auto()
    ALLOCATING_RESOURCES = auto()
    STARTING_IDE = auto()


Report = Callable[[Phase], Awaitable[None]]


class IdeManager:
    """Starts, reuses and stops Labs; the gateway asks it where a project's Lab listens."""

    def __init__(self, state_dir: Path, public_url: str, secure: bool) -> None:
        self.state_dir = state_dir
        self.public_url = public_url.rstrip("/")
        self.secure = secure  # served over TLS: the gateway's cookie is Secure
        self._labs: dict[str, Lab] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self._idle_check = asyncio.create_task(self._stop_idle())

    def url(self, project_id: str) -> str:
        return self.public_url + labs.base_path(project_id)

    def running(self, project_id: str) -> Lab | None:
        lab = self._labs.get(project_id)
        return lab if lab is not None and lab.alive() else None

    async def ensure(self, project_id: str, root: Path, idle_timeout: float,
                     report: Report) -> Lab:
        """The project's Lab: the running one if it answers, else a new one."""
        async with self._locks[project_id]:
            lab = self._labs.get(project_id)
            if lab is not None and await lab.healthy():
                lab.idle_timeout = idle_timeout
                lab.touch()
                return lab
            if lab is not None:
                await report(Phase.CLOSING_IDE)
                await self._drop(project_id)
            await report(Phase.ALLOCATING_RESOURCES)
            allocation = labs.allocate(project_id, self.state_dir / project_id)
            await report(Phase.STARTING_IDE)
            lab = await labs.start(allocation, root, idle_timeout)
            self._labs[project_id] = lab
            self._changed.set()
            return lab

    async def stop(self, project_id: str) -> None:
        """Stop the project's Lab, if it has one."""
        async with self._locks[project_id]:
            if project_id in self._labs:
                await self._drop(project_id)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background; ``close`` cancels it if it is still running."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel background work, then stop every Lab (and so every kernel) it started."""
        for task in (*self._tasks, self._idle_check):
            task.cancel()
        await asyncio.gather(self._idle_check, *self._tasks, return_exceptions=True)
        await asyncio.gather(*(self._drop(pid) for pid in list(self._labs)))

    async def _drop(self, project_id: str) -> None:
        lab = self._labs.pop(project_id)
        await lab.stop()

    async def _stop_idle(self) -> None:
        """Stop each Lab that saw no proxied traffic for its project's inactivity timeout,
        unless a kernel is still executing (a long cell is work, not idleness)."""
        while True:
            self._changed.clear()
            due = [lab.idle_timeout - lab.idle_for() for lab in self._labs.values()]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(),
                                       max(0.1, min([MAX_CHECK_INTERVAL, *due])))
            for project_id, lab in list(self._labs.items()):
                try:
                    await self._stop_if_idle(project_id, lab)
                except Exception:
                    log.exception("could not stop the idle IDE of project %s", project_id)

    async def _stop_if_idle(self, project_id: str, lab: Lab) -> None:
        if lab.alive() and lab.idle_for() < lab.idle_timeout:
            return
        if lab.alive() and await lab.busy():
            lab.touch()
            return
        async with self._locks[project_id]:
            if self._labs.get(project_id) is lab and \
                    (not lab.alive() or lab.idle_for() >= lab.idle_timeout):
                log.info("stopping the IDE of project %s", project_id)
                await self._drop(project_id)
