"""Restrictions of communities and projects: which specs, how many runs, IDE or not, disk.

A community's restriction bounds its projects': the effective value is the stricter of
the two. Set replaces every restriction of the resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import empty_pb2
from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.engine.specs import SPECS
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_service_pb2 as cs
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import restrictions_pb2 as rs
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.services import communities, operations, projects
from opensphere.services.context import CallContext
from opensphere.services.errors import invalid_argument
from opensphere.services.registry import rpc
from opensphere.store import models as m

Meta = rs.RestrictionMeta
ALLOWED_SPECS, MAX_CONCURRENT_RUNS = "allowed_specs", "max_concurrent_runs"
IDE_ALLOWED, MAX_DISK_SIZE_GB = "ide_allowed", "max_disk_size_gb"
CATALOG = {ALLOWED_SPECS: Meta.STRING, MAX_CONCURRENT_RUNS: Meta.LONG,
           IDE_ALLOWED: Meta.BOOLEAN, MAX_DISK_SIZE_GB: Meta.LONG}
FIELD = {Meta.STRING: "string_value", Meta.LONG: "long_value", Meta.BOOLEAN: "bool_value"}


@dataclass(frozen=True)
class Effective:
    """What a project may do once its community's and its own restrictions are combined."""

    allowed_specs: frozenset[str] | None = None
    max_concurrent_runs: int | None = None
    ide_allowed: bool = True
    max_disk_size_gb: int | None = None


async def _load(session: AsyncSession, kind: str, resource_id: str) -> dict[str, list[Any]]:
    rows = await session.scalars(select(m.RestrictionValue).where(
        m.RestrictionValue.resource_type == kind, m.RestrictionValue.resource_id == resource_id))
    return {r.name: list(r.values["values"]) for r in rows}


def _stricter_min(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


# Built once, run as a plain statement: every Execute reads it before its run starts.
_PROJECT_AND_COMMUNITY = select(
    m.RestrictionValue.resource_type, m.RestrictionValue.name, m.RestrictionValue.values,
).where(or_(
    (m.RestrictionValue.resource_type == "project")
    & (m.RestrictionValue.resource_id == bindparam("project")),
    (m.RestrictionValue.resource_type == "community")
    & (m.RestrictionValue.resource_id == bindparam("community"))))


async def effective(session: AsyncSession, project: m.Project) -> Effective:
    connection = await session.connection()
    rows = await connection.execute(_PROJECT_AND_COMMUNITY, {
        "project": project.id, "community": project.community_id})
    own: dict[str, list[Any]] = {}
    parent: dict[str, list[Any]] = {}
    for r in rows:
        (own if r.resource_type == "project" else parent)[r.name] = list(r.values["values"])
    specs = [frozenset(r[ALLOWED_SPECS]) for r in (own, parent) if ALLOWED_SPECS in r]
    return Effective(
        allowed_specs=frozenset.intersection(*specs) if specs else None,
        max_concurrent_runs=_stricter_min(*(r[MAX_CONCURRENT_RUNS][0] for r in (own, parent)
                                            if r.get(MAX_CONCURRENT_RUNS))),
        ide_allowed=all(all(r[IDE_ALLOWED]) for r in (own, parent) if IDE_ALLOWED in r),
        max_disk_size_gb=_stricter_min(*(r[MAX_DISK_SIZE_GB][0] for r in (own, parent)
                                         if r.get(MAX_DISK_SIZE_GB))),
    )


def _to_proto(values: dict[str, list[Any]]) -> rs.RestrictionsResponse:
    response = rs.RestrictionsResponse()
    for name in sorted(values):
        restriction = response.restrictions.add(name=name)
        getattr(restriction, FIELD[CATALOG[name]]).extend(values[name])
    return response


def _parse(restrictions: list[rs.Restriction]) -> dict[str, list[Any]]:
    """Values by name; INVALID_ARGUMENT for unknown names, wrong types or unknown specs."""
    parsed: dict[str, list[Any]] = {}
    for index, restriction in enumerate(restrictions):
        path = f"restrictions[{index}]"
        kind = CATALOG.get(restriction.name)
        if kind is None:
            raise invalid_argument(f"{path}.name", f"unknown restriction {restriction.name!r}; "
                                   f"known: {', '.join(CATALOG)}")
        field = FIELD[kind]
        values = list(getattr(restriction, field))
        if any(getattr(restriction, other) for other in FIELD.values() if other != field):
            raise invalid_argument(path, f"{restriction.name} takes {field} values only")
        if kind != Meta.STRING and len(values) != 1:
            raise invalid_argument(f"{path}.{field}", "exactly one value is required")
        if kind == Meta.LONG and values[0] < 0:
            raise invalid_argument(f"{path}.{field}", "must not be negative")
        unknown = [v for v in values if kind == Meta.STRING and v not in SPECS]
        if unknown:
            raise invalid_argument(f"{path}.{field}", f"unknown spec {unknown[0]!r}")
        parsed[restriction.name] = values
    return parsed


async def _set(ctx: CallContext, kind: str, resource_id: str,
               restrictions: list[rs.Restriction]) -> operation_pb2.Operation:
    values = _parse(restrictions)
    async with ctx.runtime.db.session() as session:
        await session.execute(delete(m.RestrictionValue).where(
            m.RestrictionValue.resource_type == kind,
            m.RestrictionValue.resource_id == resource_id))
        for name, items in values.items():
            session.add(m.RestrictionValue(resource_type=kind, resource_id=resource_id,
                                           name=name, values={"values": items}))
        return operations.completed(session, ctx, "Set restrictions", kind, resource_id,
                                    empty_pb2.Empty(), _to_proto(values))


async def meta(ctx: CallContext, request: empty_pb2.Empty) -> rs.GetRestrictionsMetaResponse:
    """The restrictions this server knows, the same for communities and projects."""
    return rs.GetRestrictionsMetaResponse(restrictions_meta=[
        rs.RestrictionMeta(name=name, value_type=kind) for name, kind in CATALOG.items()])


for _service in ("CommunityService", "ProjectService"):
    rpc(f"yandex.cloud.datasphere.v2.{_service}", "GetRestrictionsMeta")(meta)


@rpc("yandex.cloud.datasphere.v2.CommunityService", "GetRestrictions")
async def community_get(ctx: CallContext, request: cs.GetCommunityRestrictionsRequest
                        ) -> rs.RestrictionsResponse:
    async with ctx.runtime.db.session() as session:
        await communities.load(session, request.community_id)
        return _to_proto(await _load(session, "community", request.community_id))


@rpc("yandex.cloud.datasphere.v2.ProjectService", "GetRestrictions")
async def project_get(ctx: CallContext, request: ps.GetProjectRestrictionsRequest
                      ) -> rs.RestrictionsResponse:
    async with ctx.runtime.db.session() as session:
        await projects.load(session, request.project_id)
        return _to_proto(await _load(session, "project", request.project_id))


@rpc("yandex.cloud.datasphere.v2.CommunityService", "SetRestrictions")
async def community_set(ctx: CallContext, request: cs.SetCommunityRestrictionsRequest
                        ) -> operation_pb2.Operation:
    return await _set(ctx, "community", request.community_id, list(request.restrictions))


@rpc("yandex.cloud.datasphere.v2.ProjectService", "SetRestrictions")
async def project_set(ctx: CallContext, request: ps.SetProjectRestrictionsRequest
                      ) -> operation_pb2.Operation:
    return await _set(ctx, "project", request.project_id, list(request.restrictions))
