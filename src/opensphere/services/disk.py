"""Project storage size: ResizeDisk, the disk info, and the check before anything grows it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.runtime import Runtime
from opensphere.services import budget, operations, projects, restrictions
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code
from opensphere.services.registry import rpc
from opensphere.store import models as m

SERVICE = "yandex.cloud.datasphere.v2.ProjectService"
GB = 1024**3


# Measuring a project's use walks its folder and sums its checkpoints: admission checks of
# runs reuse a measure this recent.
FRESH_FOR = 5.0
_measured: dict[str, tuple[float, ps.DiskInfo]] = {}


def folder_bytes(root: Path) -> int:
    """Bytes of the files under ``root``; symlinks are not followed (nor counted)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += stat.st_size
    return total


async def size_gb(runtime: Runtime, session: AsyncSession, project_id: str) -> int:
    row = await session.get(m.ProjectBudget, project_id)
    if row is not None and row.disk_size_gb is not None:
        return row.disk_size_gb
    return runtime.settings.default_disk_size_gb


async def disk_info(runtime: Runtime, session: AsyncSession, project_id: str) -> ps.DiskInfo:
    """Size (bounded by the max_disk_size_gb restriction) and use of the project's storage."""
    size = await size_gb(runtime, session, project_id)
    project = await projects.load(session, project_id)
    cap = (await restrictions.effective(session, project)).max_disk_size_gb
    size = size if cap is None else min(size, cap)
    user = await asyncio.to_thread(folder_bytes, runtime.project_dir(project_id))
    system = await session.scalar(select(func.coalesce(
        func.sum(func.length(m.Checkpoint.notebook)), 0)).where(
        m.Checkpoint.project_id == project_id)) or 0
    used = (user + system) / GB
    return ps.DiskInfo(project_id=project_id, disk_size_gb=size, disk_used_gb=used,
                       detailed_usage=ps.DiskInfo.DetailedDiskInfo(
                           user_data_gb=user / GB, packages_gb=0.0,
                           system_data_gb=system / GB,
                           free_space_gb=max(0.0, size - used)))


def _full(project_id: str, info: ps.DiskInfo) -> ApiError:
    return ApiError(Code.RESOURCE_EXHAUSTED,
                    f"project {project_id} storage is full: {info.disk_used_gb:.3f} of "
                    f"{info.disk_size_gb:.0f} GB used; resize it with ResizeDisk")


async def free_bytes(runtime: Runtime, project_id: str, max_age: float = 0.0) -> int:
    """Room left in the project's storage; RESOURCE_EXHAUSTED when there is none."""
    seen = _measured.get(project_id)
    if seen is not None and time.monotonic() - seen[0] < max_age:
        info = seen[1]
    else:
        async with runtime.db.session() as session:
            info = await disk_info(runtime, session, project_id)
        _measured[project_id] = (time.monotonic(), info)
    room = int((info.disk_size_gb - info.disk_used_gb) * GB)
    if room <= 0:
        raise _full(project_id, info)
    return room


async def ensure_room(runtime: Runtime, project_id: str) -> None:
    """RESOURCE_EXHAUSTED when the project's storage is full (for runs: a recent walk of
    the folder is good enough)."""
    await free_bytes(runtime, project_id, max_age=FRESH_FOR)


@rpc(SERVICE, "ResizeDisk")
async def resize_disk(ctx: CallContext, request: ps.ResizeProjectDiskRequest
                      ) -> operation_pb2.Operation:
    async with ctx.runtime.db.session() as session:
        project = await projects.load(session, request.project_id)
        cap = (await restrictions.effective(session, project)).max_disk_size_gb
        if cap is not None and request.new_disk_size_gb > cap:
            raise ApiError(Code.FAILED_PRECONDITION, f"{request.new_disk_size_gb} GB is more "
                           f"than the project's max_disk_size_gb restriction of {cap}")
        old = await size_gb(ctx.runtime, session, project.id)
        row = await budget.budget_row(session, project.id)
        row.disk_size_gb = request.new_disk_size_gb
        _measured.pop(project.id, None)  # runs are admitted against the new size at once
        await session.flush()
        info = await disk_info(ctx.runtime, session, project.id)
        return operations.completed(
            session, ctx, "Resize project disk", "project", project.id,
            ps.ResizeProjectDiskMetadata(project_id=project.id, old_disk_size_gb=old,
                                         new_disk_size_gb=request.new_disk_size_gb), info)


@rpc(SERVICE, "GetDiskInfo")
async def get_disk_info(ctx: CallContext, request: ps.GetDiskInfoRequest) -> ps.DiskInfo:
    async with ctx.runtime.db.session() as session:
        await projects.load(session, request.project_id)
        return await disk_info(ctx.runtime, session, request.project_id)
