"""ProjectService.Execute, GetStateVariables and GetCellOutputs: notebooks run on the engine.

Execute returns its operation at once; the run's outcome (a checkpoint, the output
variables and the status) is written when the engine finishes it. A run stays tied to
the process that started it: its operation is refreshed while it runs, and one left
unrefreshed (its process died) is ended ABORTED by ``abort_abandoned``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere import contract
from opensphere.engine import notebook, paths
from opensphere.engine.inputs import InvalidInput
from opensphere.engine.launcher import InsufficientGpus
from opensphere.engine.notebook import InvalidNotebook, UnknownCell
from opensphere.engine.run import RunRequest, RunResult, RunStatus
from opensphere.engine.specs import UnknownSpec, resolve_spec
from opensphere.ids import new_id
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_pb2
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.runtime import Runtime
from opensphere.services import budget, disk, operations, projects, restrictions
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code, invalid_argument, not_found
from opensphere.services.registry import rpc
from opensphere.store import inserts
from opensphere.store import models as m

SERVICE = "yandex.cloud.datasphere.v2.ProjectService"
DESCRIPTION = "Execute notebook"
HEARTBEAT = 20.0  # seconds between refreshes of a running operation
ABANDONED_AFTER = timedelta(seconds=90)
PROGRESS_EVERY = 0.5  # seconds between progress writes
EAGER_WAIT = 0.5  # seconds Execute waits for the run before it answers with a running op
Settings = project_pb2.Project.Settings
RUN_TIMEOUT = {Settings.STALE_EXECUTION_TIMEOUT_MODE_UNSPECIFIED: 3600.0,
               Settings.ONE_HOUR: 3600.0, Settings.THREE_HOURS: 10800.0,
               Settings.NO_TIMEOUT: None}
STATUS = {RunStatus.OK: ps.OK, RunStatus.ERROR: ps.ERROR, RunStatus.ABORTED: ps.ABORTED}
log = logging.getLogger(__name__)


def _find_cell(root: Path, cell_id: str) -> str:
    """The notebook (relative path) that holds the cell: the deprecated cell_id target names
    no notebook, so the project's notebooks are searched."""
    matches = []
    for path in sorted(root.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts or path.name.endswith(".executed.ipynb"):
            continue
        try:
            cells = json.loads(path.read_text()).get("cells", [])
        except (OSError, ValueError):
            continue
        if any(cell.get("id") == cell_id for cell in cells):
            matches.append(path.relative_to(root).as_posix())
    if len(matches) != 1:
        problem = "is in no notebook" if not matches else f"is in {len(matches)} notebooks"
        raise invalid_argument("cell_id", f"cell {cell_id!r} {problem} of the project")
    return matches[0]


def _run_request(runtime: Runtime, project: project_pb2.Project,
                 request: ps.ProjectExecutionRequest, run_id: str) -> RunRequest:
    settings = project.settings
    try:
        spec = resolve_spec(request.spec or settings.default_dedicated_spec)
    except UnknownSpec as err:
        raise invalid_argument("spec", str(err)) from None
    root = runtime.project_dir(project.id)
    if request.WhichOneof("target") == "cell_id":
        notebook, cell_id = _find_cell(root, request.cell_id), request.cell_id
    else:
        notebook, cell_id = request.notebook_id, None
    try:
        path = paths.resolve_in(root, notebook)
    except paths.PathOutsideProject as err:
        raise invalid_argument("notebook_id", str(err)) from None
    if not path.is_file():
        raise invalid_argument("notebook_id", f"no notebook {notebook!r} in the project")
    idle = settings.vm_inactivity_timeout.ToTimedelta().total_seconds() \
        if settings.HasField("vm_inactivity_timeout") else 1800.0
    return RunRequest(
        run_id=run_id, project_id=project.id, project_dir=root, notebook_path=notebook,
        cell_id=cell_id, input_variables=contract.struct_json(request.input_variables),
        output_variable_names=list(request.output_variable_names), spec=spec,
        timeout=RUN_TIMEOUT[settings.stale_exec_timeout_mode], idle_timeout=idle or 1800.0)


@rpc(SERVICE, "Execute")
async def execute(ctx: CallContext, request: ps.ProjectExecutionRequest
                  ) -> operation_pb2.Operation:
    runtime = ctx.runtime
    await disk.ensure_room(runtime, request.project_id)
    run: RunRequest | None = None
    try:
        # One transaction checks the budget and queues the run; the run's operation is
        # recorded by _Record (with the run's outcome when it ends within EAGER_WAIT).
        async with runtime.db.session() as session:
            row = await projects.load(session, request.project_id)
            project = projects.to_proto(row)
            pending = _run_request(runtime, project, request, new_id("ops"))
            limits = await restrictions.effective(session, row)
            running = 0 if limits.max_concurrent_runs is None else await session.scalar(
                select(func.count()).select_from(m.Operation).where(
                    m.Operation.description == DESCRIPTION, m.Operation.resource_id == row.id,
                    m.Operation.done.is_(False)))
            await budget.admit(session, project, pending.spec, limits, running or 0)
            metadata = ps.ProjectExecutionMetadata(project_id=row.id)
            if pending.cell_id is not None:
                metadata.cell_id = pending.cell_id
            else:
                metadata.notebook_id = pending.notebook_path
            meter = budget.Meter(runtime, pending.run_id, project, pending.spec,
                                 ctx.caller.subject_id)
            progress = _Progress(runtime, pending.run_id, metadata, meter)
            try:
                result = await runtime.engine.submit(pending, on_progress=progress)
            except (InvalidNotebook, UnknownCell, InvalidInput, InsufficientGpus) as err:
                field = {InsufficientGpus: "spec", InvalidInput: "input_variables",
                         UnknownCell: "cell_id"}.get(type(err), "notebook_id")
                raise invalid_argument(field, str(err)) from None
            run = pending
            record = _Record(ctx, run.run_id, metadata)
            if limits.max_concurrent_runs is not None:  # later runs must count this one
                record.add_running(session)
    except BaseException:
        if run is not None:  # queued, but its operation was not recorded
            runtime.engine.cancel(run.run_id)
        raise
    completion = runtime.spawn(_complete(runtime, run, result, meter, record))
    progress.channel.close_after(completion)
    # A short run is answered with its finished operation: no polling round trip after it.
    await asyncio.wait({completion}, timeout=EAGER_WAIT)
    try:
        return await record.running()
    except BaseException:
        if not completion.done():  # it could never be answered: stop it
            runtime.engine.cancel(run.run_id)
        raise


class _Record:
    """A run's operation in the store. A run that ends within EAGER_WAIT is written once,
    finished, in the transaction of its outcome (with the call's audit record); a longer
    one is written running before Execute answers, and finished when it ends."""

    def __init__(self, ctx: CallContext, operation_id: str,
                 metadata: ps.ProjectExecutionMetadata) -> None:
        self.ctx, self.operation_id, self.metadata = ctx, operation_id, metadata
        self.created_at = m.utcnow()
        self.finished: operation_pb2.Operation | None = None
        self._running: m.Operation | None = None  # the running row, once stored
        self._lock = asyncio.Lock()  # held by whoever writes the row

    def add_running(self, session: AsyncSession) -> None:
        """Add the running operation to ``session``, whose commit the caller awaits."""
        self._running = operations.add(session, self.ctx, self._new())

    async def running(self) -> operation_pb2.Operation:
        """The operation to answer with: finished if it is, else stored running now."""
        async with self._lock:
            if self.finished is not None:
                return self.finished
            if self._running is None:
                async with self.ctx.runtime.db.session() as session:
                    row = operations.add(session, self.ctx, self._new())
                self._running = row
            return operations.to_proto(self._running)

    async def finish(self, *, response: Message | None = None, error: ApiError | None = None,
                     also: Callable[[AsyncSession], Awaitable[None]] | None = None
                     ) -> operation_pb2.Operation | None:
        """Write the operation finished, and ``also``'s writes in the same transaction;
        returns it (None if something else finished it first)."""
        async with self._lock:
            async with self.ctx.runtime.db.session() as session:
                if also is not None:
                    await also(session)
                if self._running is not None:
                    finished = await operations.finish_running(
                        session, self.operation_id, response=response, error=error)
                else:
                    row = self._new()
                    operations.finish(row, response=response, error=error)
                    audit = [self.ctx.audit.take()] if self.ctx.audit is not None else []
                    await inserts.insert(session, row, *audit)
                    finished = operations.to_proto(row)
            self.finished = finished
        return finished

    def _new(self) -> m.Operation:
        return operations.new(self.ctx, DESCRIPTION, "project", self.metadata.project_id,
                              self.metadata, operation_id=self.operation_id,
                              at=self.created_at)


class _Progress:
    """Starts the meter with the first cell, writes cells done / total into the operation's
    metadata, at most twice a second, and passes everything on to the run's watchers."""

    def __init__(self, runtime: Runtime, operation_id: str,
                 metadata: ps.ProjectExecutionMetadata, meter: budget.Meter) -> None:
        self.runtime, self.operation_id, self.metadata = runtime, operation_id, metadata
        self.meter = meter
        self.channel = runtime.watch.open(operation_id)
        # No write before EAGER_WAIT: a short run is answered done and needs no progress.
        self._last = time.monotonic()

    def __call__(self, index: int, count: int, text: str) -> None:
        self.channel.publish(index, count, text)
        self.meter.start()
        now = time.monotonic()
        if text or index >= count or now - self._last < PROGRESS_EVERY:
            return  # the last cell's end is written with the outcome
        self._last = now
        self.metadata.cells_done, self.metadata.cells_total = index, count
        snapshot = ps.ProjectExecutionMetadata()
        snapshot.CopyFrom(self.metadata)
        self.runtime.spawn(self._write(snapshot))

    async def _write(self, metadata: ps.ProjectExecutionMetadata) -> None:
        async with self.runtime.db.session() as session:
            await operations.report(session, self.operation_id, metadata)


async def _complete(runtime: Runtime, run: RunRequest, result: asyncio.Future[RunResult],
                    meter: budget.Meter, record: _Record) -> operation_pb2.Operation | None:
    """Wait for the run (refreshing its operation), then store the checkpoint and answer;
    returns the finished operation."""
    while True:
        try:
            outcome = await asyncio.wait_for(asyncio.shield(result), HEARTBEAT)
            break
        except TimeoutError:
            async with runtime.db.session() as session:
                await operations.touch(session, run.run_id)
        except Exception as err:  # the engine failed this run unexpectedly
            log.exception("run %s failed", run.run_id)
            await meter.finish(None)
            return await record.finish(error=ApiError(
                Code.INTERNAL, f"the run failed: {type(err).__name__}"))
    checkpoint_id = new_id("chk")
    executed = await asyncio.to_thread(_write_back, run, outcome)
    response = ps.ProjectExecutionResponse(
        checkpoint_id=checkpoint_id, execution_status=STATUS[outcome.status],
        missing_output_variables=outcome.missing_outputs)
    response.output_variables.update(outcome.output_variables)
    if outcome.error is not None:
        response.error.CopyFrom(_error_status(outcome))

    async def charge_and_checkpoint(session: AsyncSession) -> None:
        await meter.finish(outcome.duration, session)
        await inserts.insert(session, m.Checkpoint(
            id=checkpoint_id, project_id=run.project_id, notebook_id=run.notebook_path,
            operation_id=run.run_id, created_at=outcome.finished_at, status=outcome.status,
            notebook=executed, variables=outcome.variables, error=_error_json(outcome)))

    return await record.finish(response=response, also=charge_and_checkpoint)


def _write_back(run: RunRequest, outcome: RunResult) -> str:
    """The executed notebook goes next to its source (``x.ipynb`` → ``x.executed.ipynb``)
    so the IDE shows the outputs without the source being rewritten; returns its JSON."""
    executed = notebook.dumps(outcome.notebook)
    source = paths.resolve_in(run.project_dir, run.notebook_path)
    target = source.with_name(source.name.removesuffix(".ipynb") + ".executed.ipynb")
    temporary = target.with_name(f".{target.name}.{run.run_id}.tmp")
    temporary.write_text(executed)
    temporary.replace(target)
    return executed


def _error_json(outcome: RunResult) -> dict[str, Any]:
    e = outcome.error
    if e is None:
        return {}
    return {"reason": e.reason, "cell_index": e.cell_index, "cell_id": e.cell_id,
            "ename": e.ename, "evalue": e.evalue, "traceback": e.traceback,
            "kernel_died": e.kernel_died}


def _error_status(outcome: RunResult) -> status_pb2.Status:
    e = outcome.error
    assert e is not None
    reason = "ABORTED" if outcome.status == RunStatus.ABORTED else \
        "KERNEL_DIED" if e.kernel_died else "CELL_ERROR"
    where = f"cell {e.cell_index}" + (f" (id {e.cell_id})" if e.cell_id else "") \
        if e.cell_index is not None else "the run"
    what = f"{e.ename}: {e.evalue}" if e.ename else e.reason
    status = status_pb2.Status(code=int(Code.ABORTED if reason == "ABORTED" else Code.UNKNOWN),
                               message=f"{where}: {what}")
    info = error_details_pb2.ErrorInfo(reason=reason, domain="opensphere", metadata={
        k: str(v) for k, v in (("cell_index", e.cell_index), ("cell_id", e.cell_id),
                               ("ename", e.ename), ("evalue", e.evalue)) if v is not None})
    status.details.add().Pack(info)
    if e.traceback:
        status.details.add().Pack(error_details_pb2.DebugInfo(stack_entries=e.traceback))
    return status


async def start(runtime: Runtime) -> None:
    """Let Cancel reach this process's runs, and end runs that lost their process.

    On SQLite only this process can have been running them, so at start every unfinished
    run is over; with PostgreSQL other replicas may be running theirs, so only runs nobody
    refreshed for ``ABANDONED_AFTER`` are.
    """
    runtime.cancellers[DESCRIPTION] = runtime.engine.cancel
    await abort_abandoned(runtime, idle=timedelta(0) if runtime.db.is_sqlite else ABANDONED_AFTER)
    runtime.every(ABANDONED_AFTER.total_seconds() / 3, lambda: abort_abandoned(runtime))


async def abort_abandoned(runtime: Runtime, idle: timedelta = ABANDONED_AFTER) -> int:
    """End ABORTED every run not refreshed for ``idle`` (its process crashed or restarted)."""
    response = ps.ProjectExecutionResponse(execution_status=ps.ABORTED)
    response.error.CopyFrom(status_pb2.Status(
        code=int(Code.ABORTED), message="the run was lost: its server stopped"))
    idle_since = m.utcnow() - idle
    async with runtime.db.session() as session:
        await session.execute(update(m.Usage).where(
            m.Usage.finished.is_(False), m.Usage.updated_at < idle_since,
        ).values(finished=True))
        return await operations.finish_abandoned(session, DESCRIPTION, idle_since,
                                                 response=response)


async def _checkpoint(session: AsyncSession, project_id: str, checkpoint_id: str,
                      notebook_id: str | None = None) -> m.Checkpoint | None:
    query = select(m.Checkpoint).where(m.Checkpoint.project_id == project_id)
    if checkpoint_id:
        query = query.where(m.Checkpoint.id == checkpoint_id)
    if notebook_id is not None:
        query = query.where(m.Checkpoint.notebook_id == posixpath.normpath(notebook_id))
    return await session.scalar(query.order_by(m.Checkpoint.created_at.desc()).limit(1))


@rpc(SERVICE, "GetStateVariables")
async def get_state_variables(ctx: CallContext, request: ps.GetStateVariablesRequest
                              ) -> ps.GetStateVariablesResponse:
    names = list(request.variable_names) or None
    live = None
    if not request.checkpoint_id:
        live = await ctx.runtime.engine.state_variables(request.project_id,
                                                        request.notebook_id, names)
    if live is None:
        async with ctx.runtime.db.session() as session:
            row = await _checkpoint(session, request.project_id, request.checkpoint_id,
                                    request.notebook_id)
        if row is None and request.checkpoint_id:
            raise not_found("checkpoint", request.checkpoint_id)
        saved = row.variables if row is not None else {}  # never run: no state yet
        live = {k: v for k, v in saved.items() if names is None or k in names}
    response = ps.GetStateVariablesResponse()
    response.variables.update(live)
    return response


@rpc(SERVICE, "GetCellOutputs")
async def get_cell_outputs(ctx: CallContext, request: ps.CellOutputsRequest
                           ) -> ps.CellOutputsResponse:
    """A cell's outputs (each an nbformat output as JSON) from the newest checkpoint that
    holds the cell, or from the given one; with ``start_at``, only checkpoints from then.
    A cell that never ran has no outputs."""
    query = select(m.Checkpoint).where(m.Checkpoint.project_id == request.project_id)
    if request.checkpoint_id:
        query = query.where(m.Checkpoint.id == request.checkpoint_id)
    if request.HasField("start_at"):
        query = query.where(m.Checkpoint.created_at >= request.start_at.ToDatetime(
            tzinfo=UTC))
    async with ctx.runtime.db.session() as session:
        rows = (await session.scalars(query.order_by(m.Checkpoint.created_at.desc())
                                      .limit(50))).all()
    for row in rows:
        for cell in json.loads(row.notebook).get("cells", []):
            if cell.get("id") == request.cell_id:
                return ps.CellOutputsResponse(
                    outputs=[json.dumps(o) for o in cell.get("outputs", [])])
    if request.checkpoint_id and not rows:
        raise not_found("checkpoint", request.checkpoint_id)
    return ps.CellOutputsResponse()  # the cell has not run (yet): no outputs

