"""OrganizationService: the organizations communities are created in."""

from __future__ import annotations

from sqlalchemy import select

from opensphere.proto_gen.opensphere.v1 import organization_service_pb2 as os_
from opensphere.services import paging
from opensphere.services.context import CallContext
from opensphere.services.registry import rpc
from opensphere.store import models as m

SERVICE = "opensphere.v1.OrganizationService"


def to_proto(row: m.Organization) -> os_.Organization:
    msg = os_.Organization(id=row.id, name=row.name)
    msg.created_at.FromDatetime(row.created_at)
    return msg


@rpc(SERVICE, "List")
async def list_(ctx: CallContext, request: os_.ListOrganizationsRequest
                ) -> os_.ListOrganizationsResponse:
    query = select(m.Organization)
    if ctx.visible is not None:
        query = query.where(m.Organization.id.in_(ctx.visible))
    query = paging.keyset(query, m.Organization.id, request.page_token, request.page_size)
    async with ctx.runtime.db.session() as session:
        rows = (await session.scalars(query)).all()
    page, token = paging.split_page(rows, request.page_size, lambda r: r.id)
    return os_.ListOrganizationsResponse(organizations=[to_proto(r) for r in page],
                                         next_page_token=token)
