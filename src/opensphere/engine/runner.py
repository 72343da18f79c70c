"""One run of a notebook on its session's kernel: enter, execute the cells, collect.

A run is one request to the kernel's helper, on the helper's own socket rather than
as an execute request (see ``inkernel``): the helper enters the run (inputs, folder),
runs every cell and collects the outputs and the checkpoint's variables, and marks on
IOPub where each cell starts, so outputs are filed under their cells as they arrive.
Only an interrupted run needs one more request, to collect.

A notebook with a cell that needs the kernel's event loop (top-level ``await``) goes
cell by cell instead: one execute request per cell, the outputs riding on the last
one's ``user_expressions``, plus one silent request first when there are inputs or
the kernel is new to the notebook's folder.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from nbformat import NotebookNode
from nbformat.v4 import new_notebook, new_output

from opensphere.engine.kernel import (
    HELPER,
    MARKER,
    Kernel,
    KernelDied,
    KernelError,
    expression_value,
)
from opensphere.engine.outputs import CellOutputs, Displays
from opensphere.engine.run import ProgressCallback, RunError, RunRequest, RunResult, RunStatus

log = logging.getLogger(__name__)

T = TypeVar("T")


class RunStopped(Exception):
    """The run was cancelled or ran out of time; the argument says which."""


class Run:
    """A run waiting for, or executing on, its session's kernel."""

    def __init__(
        self,
        request: RunRequest,
        *,
        on_progress: ProgressCallback | None,
        interrupt_grace: float,
    ) -> None:
        self.request = request
        self.result: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self.cwd = request.project_dir
        self._notebook = NotebookNode()  # read when the run is prepared
        self._cells: list[int] = []
        self._position: dict[int, int] = {}  # cell index -> its place among those run
        self._env: dict[str, str] = {}
        self._on_progress = on_progress
        self._grace = interrupt_grace
        self._stop: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._started_at: datetime | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._displays: Displays = {}
        self._running: int | None = None
        self._outputs: CellOutputs | None = None
        self._failure: RunError | None = None
        self._collected: dict[str, Any] | None = None

    def prepare(
        self, notebook: NotebookNode, cells: list[int], *, cwd: Path, env: dict[str, str]
    ) -> None:
        """What to run: the cells (indexes into ``notebook``), where, and with which inputs."""
        self._notebook, self._cells, self.cwd, self._env = notebook, cells, cwd, env
        self._position = {index: position for position, index in enumerate(cells)}

    def stop(self, reason: str) -> None:
        """Abort: a queued run never starts; a running one has its kernel interrupted."""
        if self.result.done():
            return
        if self._started_at is None:
            self.finish(RunStatus.ABORTED, RunError(reason))
        elif not self._stop.done():
            self._stop.set_result(reason)

    def begin(self) -> None:
        """The run leaves the queue: its timeout starts now."""
        self._started_at = datetime.now(UTC)
        timeout = self.request.timeout
        if timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(
                timeout, self.stop, f"timed out after {timeout:g} s"
            )

    async def until_stopped(self, future: asyncio.Future[T]) -> T:
        """The future's result, unless the run is stopped first (then RunStopped)."""
        if not future.done():
            await asyncio.wait({future, self._stop}, return_when=asyncio.FIRST_COMPLETED)
        if future.done():
            return future.result()
        raise RunStopped(self._stop.result())

    def finish(
        self,
        status: RunStatus,
        error: RunError | None = None,
        collected: dict[str, Any] | None = None,
    ) -> None:
        """Settle the result (only the first call counts)."""
        if self._timer is not None:
            self._timer.cancel()
        if self.result.done():
            return
        collected = collected or {}
        now = datetime.now(UTC)
        # A run cancelled before its notebook was read still returns a (blank) notebook.
        notebook = self._notebook or new_notebook()
        self.result.set_result(
            RunResult(
                run_id=self.request.run_id,
                status=status,
                notebook=notebook,
                started_at=self._started_at or now,
                finished_at=now,
                output_variables=collected.get("outputs", {}),
                missing_outputs=collected.get("missing", list(self.request.output_variable_names)),
                variables=collected.get("variables", {}),
                error=error,
            )
        )

    async def execute(self, kernel: Kernel) -> None:
        """Run the cells on ``kernel`` and settle the result; a broken kernel is abandoned."""
        status, error = RunStatus.OK, None
        for index in self._cells:
            self._notebook.cells[index].update(outputs=[], execution_count=None)
        try:
            if not await self._in_one_request(kernel):
                await self._cell_by_cell(kernel)
            if self._failure is not None:
                status, error = RunStatus.ERROR, self._failure
        except RunStopped as stopped:
            status, error = RunStatus.ABORTED, self._at_cell(stopped.args[0])
        except KernelDied as died:
            status, error = RunStatus.ERROR, self._at_cell(str(died), kernel_died=True)
            if error.cell_index is not None:
                self._notebook.cells[error.cell_index].outputs.append(
                    new_output("error", ename="KernelDied", evalue=str(died), traceback=[])
                )
        except KernelError as failed:
            status, error = RunStatus.ERROR, self._at_cell(f"the engine's code failed: {failed}")
        if self._collected is None and kernel.usable:
            self._collected = await self._collect(kernel)
        self.finish(status, error, self._collected)

    async def _in_one_request(self, kernel: Kernel) -> bool:
        """The whole run as one request; False (nothing run) when it must go cell by cell."""
        cells = [(index, self._notebook.cells[index].source) for index in self._cells]
        cwd = None if kernel.cwd == self.cwd else str(self.cwd)
        names = list(self.request.output_variable_names)
        request = kernel.run(
            {"env": self._env, "cwd": cwd, "cells": cells, "names": names}, self._route
        )
        try:
            outcome = await self.until_stopped(request)
        except RunStopped:
            interrupted = await self._interrupt(kernel, request)
            if interrupted is not None and "failed" not in interrupted:
                self._settle(interrupted)
            raise
        except KernelDied:
            self._running = kernel.running_cell()
            raise
        if "failed" in outcome:
            raise KernelError(outcome["failed"])
        if not self._settle(outcome):
            return False
        kernel.cwd = self.cwd
        if self._failure is None:
            self._progress(len(self._cells), len(self._cells), "")
        return True

    def _route(self, message: dict[str, Any]) -> None:
        """Outputs go to the cell the helper last said it started."""
        if message["msg_type"] == MARKER:
            index = message["content"]["index"]
            position = self._position[index]
            self._running = index
            self._outputs = CellOutputs(
                self._notebook.cells[index],
                self._displays,
                partial(self._progress, position, len(self._cells)),
            )
            self._progress(position, len(self._cells), "")
        elif self._outputs is not None:
            self._outputs(message)

    def _settle(self, outcome: dict[str, Any]) -> bool:
        """Take the execution counts, the failing cell and the collected variables;
        False when the helper ran nothing."""
        if not outcome["batched"]:
            return False
        for index, count in outcome["counts"]:
            self._notebook.cells[index].execution_count = count
        failed = outcome["error"]
        if failed is not None:
            self._failure = self._cell_error(failed["index"], failed)
        self._collected = outcome
        return True

    async def _cell_by_cell(self, kernel: Kernel) -> None:
        await self._enter(kernel)
        for position, index in enumerate(self._cells):
            is_last = position == len(self._cells) - 1
            reply = await self._run_cell(kernel, index, position, is_last)
            if reply["status"] != "ok":
                self._failure = self._cell_error(index, reply)
                return
            if is_last:
                self._collected = expression_value(reply, "finish")
                self._progress(len(self._cells), len(self._cells), "")

    async def _enter(self, kernel: Kernel) -> None:
        cwd = None if kernel.cwd == self.cwd else str(self.cwd)
        if cwd is None and not self._env:
            return
        code = f"__import__({HELPER!r}).begin({self._env!r}, {cwd!r})"
        reply = await self.until_stopped(kernel.execute(code, silent=True))
        if reply["status"] != "ok":
            raise KernelError(f"{reply['ename']}: {reply['evalue']}")
        kernel.cwd = self.cwd

    async def _run_cell(
        self, kernel: Kernel, index: int, position: int, is_last: bool
    ) -> dict[str, Any]:
        cell = self._notebook.cells[index]
        self._running = index
        self._progress(position, len(self._cells), "")
        outputs = CellOutputs(
            cell, self._displays, partial(self._progress, position, len(self._cells))
        )
        request = kernel.execute(
            cell.source,
            user_expressions={"finish": self._finish_expression()} if is_last else None,
            on_output=outputs,
        )
        try:
            reply = await self.until_stopped(request)
        except RunStopped:
            interrupted = await self._interrupt(kernel, request)
            if interrupted is not None:
                cell.execution_count = interrupted.get("execution_count")
            raise
        cell.execution_count = reply.get("execution_count")
        return reply

    async def _interrupt(
        self, kernel: Kernel, request: asyncio.Future[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Interrupt the cell; a kernel that does not stop within the grace is abandoned."""
        await kernel.interrupt()
        done, _ = await asyncio.wait({request}, timeout=self._grace)
        if not done:
            request.cancel()
            kernel.abandon()
            return None
        return None if request.exception() else request.result()

    def _finish_expression(self) -> str:
        return f"__import__({HELPER!r}).finish({list(self.request.output_variable_names)!r})"

    async def _collect(self, kernel: Kernel) -> dict[str, Any] | None:
        try:
            return await kernel.evaluate(self._finish_expression())
        except (KernelDied, KernelError):
            log.warning(
                "could not read the variables of run %s", self.request.run_id, exc_info=True
            )
            return None

    def _cell_error(self, index: int, reply: dict[str, Any]) -> RunError:
        return RunError(
            reason="a cell raised an exception",
            cell_index=index,
            cell_id=self._notebook.cells[index].get("id"),
            ename=reply.get("ename", ""),
            evalue=reply.get("evalue", ""),
            traceback=list(reply.get("traceback", [])),
        )

    def _at_cell(self, reason: str, *, kernel_died: bool = False) -> RunError:
        index = self._running
        cell_id = None if index is None else self._notebook.cells[index].get("id")
        return RunError(reason, cell_index=index, cell_id=cell_id, kernel_died=kernel_died)

    def _progress(self, done: int, total: int, text: str) -> None:
        if self._on_progress is None:
            return
        try:
            self._on_progress(done, total, text)
        except Exception:
            log.exception("the progress callback of run %s failed", self.request.run_id)
