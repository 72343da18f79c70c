"""Access bindings of organizations, communities and projects: list, replace, add/remove.

Who may call these is decided by the permission table like for every RPC; this module only
keeps the bindings valid (known roles, existing subjects) and records the operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from google.protobuf import empty_pb2
from google.protobuf.message import Message
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam.authorizer import ALL_AUTHENTICATED, ALL_USERS
from opensphere.iam.roles import ROLES
from opensphere.proto_gen.yandex.cloud.access import access_pb2
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import community_service_pb2 as cs
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import project_service_pb2 as ps
from opensphere.proto_gen.yandex.cloud.operation import operation_pb2
from opensphere.services import operations, paging
from opensphere.services.context import CallContext, Caller
from opensphere.services.errors import invalid_argument
from opensphere.services.registry import rpc
from opensphere.store import models as m

SUBJECT_TYPES = ("userAccount", "serviceAccount", "federatedUser", "group", "system")
SYSTEM_SUBJECTS = (ALL_AUTHENTICATED, ALL_USERS)
Key = tuple[str, str, str]  # role_id, subject type, subject id


async def grant_creator(session: AsyncSession, caller: Caller, kind: str, resource_id: str,
                        role_id: str) -> None:
    """The creator of a community or project becomes its administrator."""
    session.add(m.AccessBinding(resource_type=kind, resource_id=resource_id, role_id=role_id,
                                subject_type=caller.subject_type, subject_id=caller.subject_id))


async def drop_bindings(session: AsyncSession, kind: str, resource_id: str) -> None:
    await session.execute(delete(m.AccessBinding).where(
        m.AccessBinding.resource_type == kind, m.AccessBinding.resource_id == resource_id))


def _key(binding: access_pb2.AccessBinding) -> Key:
    return binding.role_id, binding.subject.type, binding.subject.id


async def _check(session: AsyncSession, keys: Iterable[Key], field: str) -> None:
    """INVALID_ARGUMENT for an unknown role, subject type or subject."""
    for index, (role, kind, subject_id) in enumerate(keys):
        path = f"{field}[{index}]"
        if role not in ROLES:
            raise invalid_argument(f"{path}.role_id", f"unknown role {role!r}")
        if kind not in SUBJECT_TYPES:
            raise invalid_argument(f"{path}.subject.type", f"unknown subject type {kind!r}")
        if kind == "system":
            if subject_id not in SYSTEM_SUBJECTS:
                raise invalid_argument(f"{path}.subject.id",
                                       f"system subjects are {', '.join(SYSTEM_SUBJECTS)}")
            continue
        subject = await session.get(m.Subject, subject_id)
        if subject is None or subject.type != kind:
            raise invalid_argument(f"{path}.subject.id", f"no {kind} {subject_id!r}")


async def _current(session: AsyncSession, kind: str, resource_id: str) -> set[Key]:
    rows = await session.execute(select(
        m.AccessBinding.role_id, m.AccessBinding.subject_type, m.AccessBinding.subject_id,
    ).where(m.AccessBinding.resource_type == kind, m.AccessBinding.resource_id == resource_id))
    return {tuple(r) for r in rows}  # type: ignore[misc]


async def _apply(session: AsyncSession, kind: str, resource_id: str, add: set[Key],
                 remove: set[Key]) -> None:
    for role, subject_type, subject_id in remove:
        await session.execute(delete(m.AccessBinding).where(
            m.AccessBinding.resource_type == kind, m.AccessBinding.resource_id == resource_id,
            m.AccessBinding.role_id == role, m.AccessBinding.subject_id == subject_id,
            m.AccessBinding.subject_type == subject_type))
    for role, subject_type, subject_id in add:
        session.add(m.AccessBinding(resource_type=kind, resource_id=resource_id, role_id=role,
                                    subject_type=subject_type, subject_id=subject_id))


def _binding(key: Key) -> access_pb2.AccessBinding:
    role, subject_type, subject_id = key
    return access_pb2.AccessBinding(
        role_id=role, subject=access_pb2.Subject(id=subject_id, type=subject_type))


async def list_bindings(ctx: CallContext, kind: str, request: access_pb2.ListAccessBindingsRequest
                        ) -> access_pb2.ListAccessBindingsResponse:
    async with ctx.runtime.db.session() as session:
        keys = sorted(await _current(session, kind, request.resource_id))
    after = paging.decode_token(request.page_token)
    if after is not None:
        keys = [k for k in keys if "\x1f".join(k) > after]
    page, token = paging.split_page(keys, request.page_size, "\x1f".join)
    return access_pb2.ListAccessBindingsResponse(
        access_bindings=[_binding(k) for k in page], next_page_token=token)


async def set_bindings(ctx: CallContext, kind: str, request: access_pb2.SetAccessBindingsRequest,
                       metadata: Message) -> operation_pb2.Operation:
    wanted = {_key(b) for b in request.access_bindings}
    async with ctx.runtime.db.session() as session:
        await _check(session, (_key(b) for b in request.access_bindings), "access_bindings")
        current = await _current(session, kind, request.resource_id)
        await _apply(session, kind, request.resource_id, wanted - current, current - wanted)
        return operations.completed(session, ctx, "Set access bindings", kind,
                                    request.resource_id, metadata, empty_pb2.Empty())


async def update_bindings(ctx: CallContext, kind: str,
                          request: access_pb2.UpdateAccessBindingsRequest,
                          metadata: Message) -> operation_pb2.Operation:
    """Apply ADD / REMOVE deltas; the response lists the deltas that changed something."""
    deltas = list(request.access_binding_deltas)
    async with ctx.runtime.db.session() as session:
        await _check(session, (_key(d.access_binding) for d in deltas),
                     "access_binding_deltas")
        current = await _current(session, kind, request.resource_id)
        effective = []
        for delta in deltas:
            key = _key(delta.access_binding)
            if delta.action == access_pb2.ADD and key not in current:
                current.add(key)
                await _apply(session, kind, request.resource_id, {key}, set())
            elif delta.action == access_pb2.REMOVE and key in current:
                current.discard(key)
                await _apply(session, kind, request.resource_id, set(), {key})
            else:
                continue
            effective.append(delta)
        result = access_pb2.AccessBindingsOperationResult(effective_deltas=effective)
        return operations.completed(session, ctx, "Update access bindings", kind,
                                    request.resource_id, metadata, result)


def _register(service: str, kind: str, set_meta: Callable[[str], Message],
              update_meta: Callable[[str], Message]) -> None:
    """The three access-binding RPCs of one resource kind."""

    async def list_(ctx: CallContext, request: access_pb2.ListAccessBindingsRequest
                    ) -> access_pb2.ListAccessBindingsResponse:
        return await list_bindings(ctx, kind, request)

    async def set_(ctx: CallContext, request: access_pb2.SetAccessBindingsRequest
                   ) -> operation_pb2.Operation:
        return await set_bindings(ctx, kind, request, set_meta(request.resource_id))

    async def update(ctx: CallContext, request: access_pb2.UpdateAccessBindingsRequest
                     ) -> operation_pb2.Operation:
        return await update_bindings(ctx, kind, request, update_meta(request.resource_id))

    rpc(service, "ListAccessBindings")(list_)
    rpc(service, "SetAccessBindings")(set_)
    rpc(service, "UpdateAccessBindings")(update)


_register("yandex.cloud.datasphere.v2.CommunityService", "community",
          lambda i: cs.SetCommunityAccessBindingsMetadata(community_id=i),
          lambda i: cs.UpdateCommunityAccessBindingsMetadata(community_id=i))
_register("yandex.cloud.datasphere.v2.ProjectService", "project",
          lambda i: ps.SetProjectAccessBindingsMetadata(project_id=i),
          lambda i: ps.UpdateProjectAccessBindingsMetadata(project_id=i))
_register("opensphere.v1.OrganizationService", "organization",
          lambda i: access_pb2.SetAccessBindingsMetadata(resource_id=i),
          lambda i: access_pb2.UpdateAccessBindingsMetadata(resource_id=i))
