"""ProjectService: projects, their settings and limits.

Execution, the IDE, budgets and access bindings are separate modules that register the
remaining ProjectService methods; until they exist those methods answer UNIMPLEMENTED.
"""

from __future__ import annotations

from google.protobuf import empty_pb2, json_format
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam.roles import PROJECT_CREATOR_ROLE
from opensphere.ids import new_id
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_pb2
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.services import access, communities, operations, paging
from opensphere.services.context import CallContext
from opensphere.services.errors import not_found
from opensphere.services.registry import rpc
from opensphere.services.resources import apply_update
from opensphere.store import models as m

SERVICE = "yandex.cloud.datasphere.v2.ProjectService"
UPDATABLE = ("name", "description", "labels", "settings", "limits")


def _as_json(message: project_pb2.Project.Settings | project_pb2.Project.Limits) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def to_proto(row: m.Project) -> project_pb2.Project:
    msg = project_pb2.Project(
        id=row.id, name=row.name, description=row.description, labels=row.labels,
        created_by_id=row.created_by_id, community_id=row.community_id,
    )
    msg.created_at.FromDatetime(row.created_at)
    if row.settings:  # ParseDict is the slow part of rendering a project; skip it when empty
        json_format.ParseDict(row.settings, msg.settings)
    if row.limits:
        json_format.ParseDict(row.limits, msg.limits)
    msg.settings.SetInParent()  # always present, so every reply has the same shape
    msg.limits.SetInParent()
    return msg


def _store(row: m.Project, msg: project_pb2.Project) -> None:
    row.name, row.description = msg.name, msg.description
    row.labels = dict(msg.labels)
    row.settings = _as_json(msg.settings)
    row.limits = _as_json(msg.limits)


async def load(session: AsyncSession, project_id: str) -> m.Project:
    row = await session.get(m.Project, project_id)
    if row is None:
        raise not_found("project", project_id)
    return row


@rpc(SERVICE, "Create")
async def create(ctx: CallContext, request: ps.CreateProjectRequest) -> operation_pb2.Operation:
    async with ctx.runtime.db.session() as session:
        await communities.load(session, request.community_id)
        row = m.Project(id=new_id("bt1"), community_id=request.community_id,
                        created_by_id=ctx.caller.subject_id, created_at=m.utcnow())
        _store(row, project_pb2.Project(
            name=request.name, description=request.description, labels=request.labels,
            settings=request.settings, limits=request.limits))
        session.add(row)
        await access.grant_creator(session, ctx.caller, "project", row.id, PROJECT_CREATOR_ROLE)
        return operations.completed(
            session, ctx, "Create project", "project", row.id,
            ps.CreateProjectMetadata(project_id=row.id), to_proto(row))


@rpc(SERVICE, "Get")
async def get(ctx: CallContext, request: ps.GetProjectRequest) -> project_pb2.Project:
    async with ctx.runtime.db.session() as session:
        return to_proto(await load(session, request.project_id))


@rpc(SERVICE, "Update")
async def update(ctx: CallContext, request: ps.UpdateProjectRequest) -> operation_pb2.Operation:
    async with ctx.runtime.db.session() as session:
        row = await load(session, request.project_id)
        current = to_proto(row)
        patch = project_pb2.Project(name=request.name, description=request.description,
                                    labels=request.labels)
        if request.HasField("settings"):
            patch.settings.CopyFrom(request.settings)
        if request.HasField("limits"):
            patch.limits.CopyFrom(request.limits)
        apply_update(current, patch, request.update_mask, UPDATABLE)
        _store(row, current)
        return operations.completed(
            session, ctx, "Update project", "project", row.id,
            ps.UpdateProjectMetadata(project_id=row.id), current)


@rpc(SERVICE, "Delete")
async def delete(ctx: CallContext, request: ps.DeleteProjectRequest) -> operation_pb2.Operation:
    async with ctx.runtime.db.session() as session:
        row = await load(session, request.project_id)
        await access.drop_bindings(session, "project", row.id)
        await session.delete(row)
        done = operations.completed(
            session, ctx, "Delete project", "project", row.id,
            ps.DeleteProjectMetadata(project_id=row.id), empty_pb2.Empty())
    if ctx.runtime.ide is not None:  # its IDE goes with it
        await ctx.runtime.ide.stop(request.project_id)
    return done


@rpc(SERVICE, "List")
async def list_(ctx: CallContext, request: ps.ListProjectsRequest) -> ps.ListProjectsResponse:
    query = select(m.Project).where(m.Project.community_id == request.community_id)
    if request.project_name_pattern:
        like = paging.like_pattern(request.project_name_pattern)
        query = query.where(m.Project.name.ilike(like, escape="\\"))
    if request.owned_by_id:
        query = query.where(m.Project.created_by_id == request.owned_by_id)
    if ctx.visible is not None:
        query = query.where(m.Project.id.in_(ctx.visible))
    query = paging.keyset(query, m.Project.id, request.page_token, request.page_size)
    async with ctx.runtime.db.session() as session:
        rows = (await session.scalars(query)).all()
    page, token = paging.split_page(rows, request.page_size, lambda r: r.id)
    return ps.ListProjectsResponse(projects=[to_proto(r) for r in page], next_page_token=token)
