"""CommunityService: communities group projects inside an organization."""

from __future__ import annotations

from google.protobuf import empty_pb2
from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam.roles import COMMUNITY_CREATOR_ROLE
from opensphere.ids import new_id
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import (
    community_pb2,
)
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import (
    community_service_pb2 as cs,
)
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.services import access, operations, paging
from opensphere.services.context import CallContext
from opensphere.services.errors import ApiError, Code, not_found
from opensphere.services.registry import rpc
from opensphere.services.resources import apply_update
from opensphere.store import models as m

SERVICE = "yandex.cloud.datasphere.v2.CommunityService"
UPDATABLE = ("name", "description", "labels")


def to_proto(row: m.Community) -> community_pb2.Community:
    msg = community_pb2.Community(
        id=row.id, name=row.name, description=row.description, labels=row.labels,
        created_by_id=row.created_by_id, organization_id=row.organization_id,
    )
    msg.created_at.FromDatetime(row.created_at)
    return msg


async def load(session: AsyncSession, community_id: str) -> m.Community:
    row = await session.get(m.Community, community_id)
    if row is None:
        raise not_found("community", community_id)
    return row


@rpc(SERVICE, "Create")
async def create(ctx: CallContext, request: cs.CreateCommunityRequest) -> operation_pb2.Operation:
    async with ctx.runtime.db.session() as session:
        if await session.get(m.Organization, request.organization_id) is None:
            raise not_found("organization", request.organization_id)
        row = m.Community(
            id=new_id("bt1"), organization_id=request.organization_id, name=request.name,
            description=request.description, labels=dict(request.labels),
            billing_account_id=request.billing_account_id,
            created_by_id=ctx.caller.subject_id, created_at=m.utcnow(),
        )
        session.add(row)
        await access.grant_creator(session, ctx.caller, "community", row.id,
                                   COMMUNITY_CREATOR_ROLE)
        return operations.completed(
            session, ctx, "Create community", "community", row.id,
            cs.CreateCommunityMetadata(community_id=row.id), to_proto(row))


@rpc(SERVICE, "Get")
async def get(ctx: CallContext, request: cs.GetCommunityRequest) -> community_pb2.Community:
    async with ctx.runtime.db.session() as session:
        return to_proto(await load(session, request.community_id))


@rpc(SERVICE, "Update")
async def update(ctx: CallContext, request: cs.UpdateCommunityRequest) -> operation_pb2.Operation:
    async with ctx.runtime.db.session() as session:
        row = await load(session, request.community_id)
        current = to_proto(row)
        patch = community_pb2.Community(name=request.name, description=request.description,
                                        labels=request.labels)
        apply_update(current, patch, request.update_mask, UPDATABLE)
        row.name, row.description = current.name, current.description
        row.labels = dict(current.labels)
        return operations.completed(
            session, ctx, "Update community", "community", row.id,
            cs.UpdateCommunityMetadata(community_id=row.id), current)


@rpc(SERVICE, "Delete")
async def delete(ctx: CallContext, request: cs.DeleteCommunityRequest) -> operation_pb2.Operation:
    async with ctx.runtime.db.session() as session:
        row = await load(session, request.community_id)
        if await session.scalar(select(exists().where(m.Project.community_id == row.id))):
            raise ApiError(Code.FAILED_PRECONDITION,
                           f"community {row.id} still has projects: delete them first")
        await access.drop_bindings(session, "community", row.id)
        await session.delete(row)
        return operations.completed(
            session, ctx, "Delete community", "community", row.id,
            cs.DeleteCommunityMetadata(community_id=row.id), empty_pb2.Empty())


@rpc(SERVICE, "List")
async def list_(ctx: CallContext, request: cs.ListCommunitiesRequest
                ) -> cs.ListCommunitiesResponse:
    query = select(m.Community).where(m.Community.organization_id == request.organization_id)
    if request.name_or_description_pattern:
        like = paging.like_pattern(request.name_or_description_pattern)
        query = query.where(or_(m.Community.name.ilike(like, escape="\\"),
                                m.Community.description.ilike(like, escape="\\")))
    if request.owned_by_id:
        query = query.where(m.Community.created_by_id == request.owned_by_id)
    if ctx.visible is not None:
        query = query.where(m.Community.id.in_(ctx.visible))
    query = paging.keyset(query, m.Community.id, request.page_token, request.page_size)
    async with ctx.runtime.db.session() as session:
        rows = (await session.scalars(query)).all()
    page, token = paging.split_page(rows, request.page_size, lambda r: r.id)
    return cs.ListCommunitiesResponse(communities=[to_proto(r) for r in page],
                                      next_page_token=token)
