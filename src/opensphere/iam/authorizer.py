"""Decides whether a caller holds a permission on a resource.

Bindings on a resource and on each of its ancestors count. A resource the caller cannot
see at all is reported as NOT_FOUND, so ids cannot be probed; one the caller can see but
not act on is PERMISSION_DENIED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam.roles import ROLES, roles_granting
from opensphere.services.context import Caller
from opensphere.services.errors import ApiError, Code, not_found
from opensphere.store import models as m

SYSTEM_ID = "system"
ALL_AUTHENTICATED = "allAuthenticatedUsers"
ALL_USERS = "allUsers"


@dataclass(frozen=True)
class Resource:
    kind: str  # system | organization | community | project
    id: str


SYSTEM = Resource("system", SYSTEM_ID)


async def ancestry(session: AsyncSession, kind: str, resource_id: str) -> list[Resource] | None:
    """The resource followed by its parents up to the installation; None if it is missing."""
    if kind == "system":
        return [SYSTEM]
    if kind == "organization":
        found = await session.scalar(select(m.Organization.id).where(
            m.Organization.id == resource_id))
        return [Resource(kind, resource_id), SYSTEM] if found else None
    if kind == "community":
        org = await session.scalar(select(m.Community.organization_id).where(
            m.Community.id == resource_id))
        return None if org is None else [
            Resource(kind, resource_id), Resource("organization", org), SYSTEM]
    if kind == "project":
        row = (await session.execute(
            select(m.Project.community_id, m.Community.organization_id)
            .join(m.Community, m.Community.id == m.Project.community_id)
            .where(m.Project.id == resource_id))).one_or_none()
        return None if row is None else [
            Resource(kind, resource_id), Resource("community", row.community_id),
            Resource("organization", row.organization_id), SYSTEM]
    raise ValueError(f"unknown resource kind {kind!r}")


def principals(caller: Caller) -> Any:
    """Every subject id whose bindings apply to the caller: itself, its groups, the public
    (as a subquery, so checking a permission stays one round trip)."""
    groups = select(m.GroupMember.group_id).where(m.GroupMember.subject_id == caller.subject_id)
    return select(literal(caller.subject_id)).union_all(
        groups, select(literal(ALL_AUTHENTICATED)), select(literal(ALL_USERS)))


async def permissions_on(session: AsyncSession, caller: Caller,
                         chain: list[Resource]) -> set[str]:
    where = or_(*(and_(m.AccessBinding.resource_type == r.kind,
                       m.AccessBinding.resource_id == r.id) for r in chain))
    roles = await session.scalars(select(m.AccessBinding.role_id).where(
        where, m.AccessBinding.subject_id.in_(principals(caller))).distinct())
    granted: set[str] = set()
    for role in roles:
        granted |= ROLES.get(role, frozenset())
    return granted


async def grants(session: AsyncSession, caller: Caller, kind: str,
                 resource_id: str) -> frozenset[str] | None:
    """Every permission ``caller`` holds on the resource; None when it does not exist."""
    chain = await ancestry(session, kind, resource_id)
    return None if chain is None else frozenset(await permissions_on(session, caller, chain))


def decide(granted: frozenset[str] | None, permission: str, kind: str, resource_id: str) -> None:
    """Return if ``permission`` is among those ``granted``, raise the right refusal otherwise."""
    if granted is None:
        raise not_found(kind, resource_id)
    if permission in granted:
        return
    if f"{kind}.get" in granted or kind == "system":  # the installation is never secret
        raise ApiError(Code.PERMISSION_DENIED,
                       f"permission {permission} is required on {kind} {resource_id}")
    raise not_found(kind, resource_id)


async def visible_ids(session: AsyncSession, caller: Caller, permission: str, kind: str,
                      parent: Resource) -> set[str] | None:
    """Ids of ``kind`` under ``parent`` the caller may see; None means all of them."""
    chain = await ancestry(session, parent.kind, parent.id)
    if chain is not None and permission in await permissions_on(session, caller, chain):
        return None
    return set(await session.scalars(select(m.AccessBinding.resource_id).where(
        m.AccessBinding.resource_type == kind,
        m.AccessBinding.subject_id.in_(principals(caller)),
        m.AccessBinding.role_id.in_(roles_granting(permission)))))
