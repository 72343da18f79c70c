"""The single entry point both transports call: authenticate, validate, authorize, dispatch,
and record what was done or refused in the audit log."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam import audit
from opensphere.iam.authorizer import SYSTEM, Resource, visible_ids
from opensphere.iam.decisions import AccessView
from opensphere.runtime import Runtime
from opensphere.services.context import CallContext, Caller
from opensphere.services.errors import ApiError, Code, invalid_argument, not_found
from opensphere.services.permissions import (
    CANCEL_PERMISSION,
    CREATOR_ONLY_OPERATIONS,
    RULES,
    Authenticated,
    Check,
    Listing,
    OnOperation,
    Public,
    Rule,
)
from opensphere.services.registry import HANDLERS, Handler
from opensphere.services.validation import validate
from opensphere.store import models as m

SERVICE_MODULES = (
    "communities", "projects", "operations", "endpoints", "organizations", "tokens", "access",
    "subjects", "ide", "files", "execution", "restrictions", "budget", "disk", "watch",
)
ANONYMOUS = Caller(subject_id="", subject_type="anonymous")
AUDITED_IDS = ("subject_id", "group_id", "credential_id")
DENIED = (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED, Code.NOT_FOUND)
log = logging.getLogger(__name__)

for _module in SERVICE_MODULES:
    importlib.import_module(f"opensphere.services.{_module}")


def is_mutating(method: MethodDescriptor) -> bool:
    """Everything but reads (Get*/List*/Download/Watch) changes state and is audited."""
    return not method.name.startswith(("Get", "List", "Download", "Watch"))


async def _following(rule: Rule, first: Message,
                     rest: AsyncIterator[Message]) -> AsyncIterator[Message]:
    """The rest of a client stream; a message naming another resource than ``first`` is
    refused, since only ``first`` was authorized."""
    field = rule.field if isinstance(rule, Check) else ""
    async for message in rest:
        if field and getattr(message, field) not in ("", getattr(first, field)):
            raise invalid_argument(field, "only the first message of a stream names it")
        yield message


class Api:
    """Runs one RPC for a transport. Every call goes through ``_admitted``, whatever its
    streaming shape; nothing else decides."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def call(self, method: MethodDescriptor, request: Message,
                   authorization: str | None) -> Message:
        """A unary RPC."""
        async with self._admitted(method, request, authorization) as (ctx, handler):
            return await handler(ctx, request)  # type: ignore[call-arg]

    async def call_stream_unary(self, method: MethodDescriptor, first: Message,
                                rest: AsyncIterator[Message],
                                authorization: str | None) -> Message:
        """A client-streaming RPC: ``first`` alone decides the resource, so it is checked
        before the handler reads ``rest``, whose messages may not aim elsewhere."""
        async with self._admitted(method, first, authorization) as (ctx, handler):
            following = _following(RULES[method.full_name], first, rest)
            return await handler(ctx, first, following)  # type: ignore[call-arg]

    async def call_unary_stream(self, method: MethodDescriptor, request: Message,
                                authorization: str | None) -> AsyncIterator[Message]:
        """A server-streaming RPC; the checks run when the first message is asked for."""
        async with self._admitted(method, request, authorization) as (ctx, handler):
            async for message in handler(ctx, request):  # type: ignore[union-attr]
                yield message

    @asynccontextmanager
    async def _admitted(self, method: MethodDescriptor, request: Message,
                        authorization: str | None
                        ) -> AsyncIterator[tuple[CallContext, Handler]]:
        """Authenticate, validate and authorize ``request``, then give the handler to run;
        audit refusals always, and the outcome of whatever changes state."""
        name = method.full_name
        rule = RULES.get(name)
        caller = ANONYMOUS
        try:
            if rule is None:
                raise ApiError(Code.UNIMPLEMENTED, f"{name} has no access rule")
            async with self.runtime.db.session() as session:
                access = await self.runtime.decisions.view(session)
                if not isinstance(rule, Public):
                    caller = await access.authenticate(authorization, self.runtime.oidc)
                handler = HANDLERS.get(name)
                if handler is None:
                    raise ApiError(
                        Code.UNIMPLEMENTED,
                        f"{method.containing_service.name}.{method.name} is part of the "
                        "DataSphere API but is not available in this OpenSphere release yet")
                validate(request)
                visible = await self._authorize(session, access, caller, rule, request)
            pending = audit.Pending(caller.subject_id, name, _audited_id(rule, request)) \
                if is_mutating(method) else None
            yield CallContext(caller=caller, runtime=self.runtime, visible=visible,
                              audit=pending), handler
        except ApiError as err:
            if err.code in DENIED or is_mutating(method):
                await self._audit(caller, method, rule, request, err.code.name, err.message)
            raise
        if pending is not None and not pending.written:
            await self._audit(caller, method, rule, request, "OK", "")

    async def _authorize(self, session: AsyncSession, access: AccessView, caller: Caller,
                         rule: Rule, request: Message) -> set[str] | None:
        """Enforce ``rule``; for listings, return the ids the caller may see."""
        if isinstance(rule, Public | Authenticated):
            return None
        if isinstance(rule, Check):
            resource_id = getattr(request, rule.field) if rule.field else SYSTEM.id
            await access.authorize(caller, rule.permission, rule.kind, resource_id)
            return None
        if isinstance(rule, Listing):
            parent = Resource(rule.parent_kind, getattr(request, rule.parent_field)) \
                if rule.parent_field else SYSTEM
            return await visible_ids(session, caller, rule.permission, rule.kind, parent)
        assert isinstance(rule, OnOperation)
        await self._authorize_operation(session, access, caller, rule, request.operation_id)
        return None

    @staticmethod
    async def _authorize_operation(session: AsyncSession, access: AccessView, caller: Caller,
                                   rule: OnOperation, operation_id: str) -> None:
        """An operation is as visible as its resource; its creator may always read and
        cancel it, even after the resource is gone."""
        op = await session.get(m.Operation, operation_id)
        if op is None:
            raise not_found("operation", operation_id)
        if op.created_by == caller.subject_id:
            return
        # Others see an operation when they see its resource; one holding its creator's
        # secret only when they administer the resource (and could grant themselves it).
        needed = f"{op.resource_type}.setAccessBindings" \
            if op.description in CREATOR_ONLY_OPERATIONS else f"{op.resource_type}.get"
        try:
            await access.authorize(caller, needed, op.resource_type, op.resource_id)
            if rule.cancel:
                await access.authorize(caller, CANCEL_PERMISSION[op.resource_type],
                                       op.resource_type, op.resource_id)
        except (ApiError, ValueError, KeyError) as err:
            if isinstance(err, ApiError) and err.code == Code.PERMISSION_DENIED \
                    and op.description not in CREATOR_ONLY_OPERATIONS:
                raise
            raise not_found("operation", operation_id) from None

    async def _audit(self, caller: Caller, method: MethodDescriptor, rule: Rule | None,
                     request: Message, result: str, message: str) -> None:
        try:
            await audit.record(self.runtime.db, caller.subject_id, method.full_name,
                               _audited_id(rule, request), result, message)
        except Exception:  # the call's own outcome stands; the failure is logged loudly
            log.exception("could not write the audit record for %s", method.full_name)


def _audited_id(rule: Rule | None, request: Message) -> str:
    """The resource an audit record names: the one the rule checks, the operation, or for
    installation-wide calls the subject or credential acted on."""
    if isinstance(rule, Check) and rule.field:
        return str(getattr(request, rule.field))
    if isinstance(rule, OnOperation):
        return str(request.operation_id)  # type: ignore[attr-defined]
    fields = request.DESCRIPTOR.fields_by_name
    return next((getattr(request, f) for f in AUDITED_IDS if f in fields), "")
