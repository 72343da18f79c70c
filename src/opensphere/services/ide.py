"""ProjectService.Open: start (or reuse) the project's JupyterLab and hand out a way in.

The operation returns at once; a background task moves its ``OpenProjectMetadata.status``
through the phases as they happen and finishes it with the project URL and a single-use
session token. Operations whose worker died with its process are failed by a sweep.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.ide import credentials
from opensphere.ide.lab import START_TIMEOUT, LabError
from opensphere.ide.manager import IdeManager, Phase
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.runtime import Runtime
from opensphere.services import operations, projects, restrictions
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code
from opensphere.services.registry import rpc
from opensphere.store import models as m

log = logging.getLogger(__name__)
SERVICE = "yandex.cloud.datasphere.v2.ProjectService"
DESCRIPTION = "Open project"
DEFAULT_IDLE_TIMEOUT = timedelta(minutes=30)
# A live worker touches its operation at every phase, and no phase outlasts the Lab's start.
ABANDONED_AFTER = timedelta(seconds=START_TIMEOUT + 30)
SWEEP_INTERVAL = 30.0
Status = ps.OpenProjectMetadata.OpenProjectStatus

async def start(runtime: Runtime, public_url: str) -> IdeManager:
    """Serve IDEs in this process (the REST server's ``public_url`` is known by now)."""
    manager = IdeManager(runtime.settings.data_dir / "ide", public_url, runtime.settings.tls)
    runtime.ide = manager
    runtime.closers.append(manager.close)
    await _sweep(runtime)
    runtime.every(SWEEP_INTERVAL, lambda: _sweep(runtime))
    return manager


def _manager(runtime: Runtime) -> IdeManager:
    if runtime.ide is None:
        raise ApiError(Code.UNAVAILABLE, "this server process does not serve IDEs")
    return runtime.ide


def _idle_timeout(project: m.Project) -> float:
    timeout = projects.to_proto(project).settings.vm_inactivity_timeout.ToTimedelta()
    return (timeout or DEFAULT_IDLE_TIMEOUT).total_seconds()


def _metadata(project_id: str, phase: Phase | None = None) -> ps.OpenProjectMetadata:
    status = Status.Value(f"OPEN_PROJECT_STATUS_{phase.name}") if phase else 0
    return ps.OpenProjectMetadata(project_id=project_id, status=status)


@rpc(SERVICE, "Open")
async def open_project(ctx: CallContext, request: ps.OpenProjectRequest
                       ) -> operation_pb2.Operation:
    manager = _manager(ctx.runtime)
    async with ctx.runtime.db.session() as session:
        project = await projects.load(session, request.project_id)
        idle_timeout = _idle_timeout(project)
        if not (await restrictions.effective(session, project)).ide_allowed:
            raise ApiError(Code.FAILED_PRECONDITION,
                           f"the IDE is not allowed in project {project.id} (ide_allowed)")
    project_id, subject_id = project.id, ctx.caller.subject_id
    lab = manager.running(project_id)
    if lab is not None and await lab.healthy(timeout=2.0):
        # Reuse: nothing to wait for, so the operation is done when the call returns.
        lab.idle_timeout = idle_timeout
        lab.touch()
        async with ctx.runtime.db.session() as session:
            return operations.completed(session, ctx, DESCRIPTION, "project", project_id,
                                        _metadata(project_id),
                                        _response(manager, session, subject_id, project_id))
    async with ctx.runtime.db.session() as session:
        row = operations.start(session, ctx, DESCRIPTION, "project", project_id,
                               _metadata(project_id))
    manager.spawn(_open(ctx.runtime, manager, row.id, project_id, subject_id, idle_timeout))
    return operations.to_proto(row)


def _response(manager: IdeManager, session: AsyncSession, subject_id: str,
              project_id: str) -> ps.OpenProjectResponse:
    token = credentials.issue_entry(session, subject_id, project_id)
    return ps.OpenProjectResponse(project_url=manager.url(project_id), session_token=token)


async def _open(runtime: Runtime, manager: IdeManager, operation_id: str, project_id: str,
                subject_id: str, idle_timeout: float) -> None:
    async def report(phase: Phase) -> None:
        async with runtime.db.session() as session:
            await operations.report(session, operation_id, _metadata(project_id, phase))

    try:
        await manager.ensure(project_id, runtime.project_dir(project_id), idle_timeout, report)
        async with runtime.db.session() as session:
            await projects.load(session, project_id)  # deleted meanwhile: NOT_FOUND
            await operations.finish_running(
                session, operation_id,
                response=_response(manager, session, subject_id, project_id))
    except ApiError as err:
        await manager.stop(project_id)
        await _fail(runtime, operation_id, err)
    except asyncio.CancelledError:
        await _fail(runtime, operation_id, ApiError(
            Code.UNAVAILABLE, "the server stopped before the IDE was ready; open it again"))
        raise
    except LabError as err:
        await _fail(runtime, operation_id, ApiError(Code.INTERNAL, str(err)))
    except Exception:
        log.exception("opening project %s failed", project_id)
        await _fail(runtime, operation_id, ApiError(Code.INTERNAL, "the IDE could not start"))


async def _fail(runtime: Runtime, operation_id: str, error: ApiError) -> None:
    async with runtime.db.session() as session:
        await operations.finish_running(session, operation_id, error=error)


async def _sweep(runtime: Runtime) -> None:
    """Fail Open operations left running by a process that died; drop expired credentials."""
    async with runtime.db.session() as session:
        failed = await operations.finish_abandoned(
            session, DESCRIPTION, m.utcnow() - ABANDONED_AFTER,
            error=ApiError(Code.ABORTED, "the server opening the project stopped; open it again"))
        await credentials.purge_expired(session)
    if failed:
        log.warning("failed %d Open operations abandoned by a stopped server", failed)

