"""The single entry point both transports call: authenticate, validate, authorize, dispatch,
and record what was done or refused in the audit log."""

from __future__ import annotations

import importlib
import logging

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam import audit
from opensphere.iam.authn import authenticate
from opensphere.iam.authorizer import SYSTEM, Resource, authorize, visible_ids
from opensphere.runtime import Runtime
from opensphere.services.context import CallContext, Caller
from opensphere.services.errors import ApiError, Code, not_found
from opensphere.services.permissions import (
    CANCEL_PERMISSION,
    RULES,
    Authenticated,
    Check,
    Listing,
    OnOperation,
    Public,
    Rule,
)
from opensphere.services.registry import HANDLERS
from opensphere.services.validation import validate
from opensphere.store import models as m

SERVICE_MODULES = (
    "communities", "projects", "operations", "endpoints", "organizations", "tokens", "access",
    "subjects", "ide",
)
ANONYMOUS = Caller(subject_id="", subject_type="anonymous")
DENIED = (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED, Code.NOT_FOUND)
log = logging.getLogger(__name__)

for _module in SERVICE_MODULES:
    importlib.import_module(f"opensphere.services.{_module}")


def is_mutating(method: MethodDescriptor) -> bool:
    """Everything but reads (Get*/List*) changes state and is audited."""
    return not method.name.startswith(("Get", "List"))


class Api:
    """Runs one RPC for a transport. Every call goes through ``call``; nothing else decides."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def call(self, method: MethodDescriptor, request: Message,
                   authorization: str | None) -> Message:
        name = method.full_name
        rule = RULES.get(name)
        caller = ANONYMOUS
        try:
            if rule is None:
                raise ApiError(Code.UNIMPLEMENTED, f"{name} has no access rule")
            async with self.runtime.db.session() as session:
                if not isinstance(rule, Public):
                    caller = await authenticate(session, authorization, self.runtime.oidc)
                handler = HANDLERS.get(name)
                if handler is None:
                    raise ApiError(
                        Code.UNIMPLEMENTED,
                        f"{method.containing_service.name}.{method.name} is part of the "
                        "DataSphere API but is not available in this OpenSphere release yet")
                validate(request)
                visible = await self._authorize(session, caller, rule, request)
            response = await handler(
                CallContext(caller=caller, runtime=self.runtime, visible=visible), request)
        except ApiError as err:
            if err.code in DENIED or is_mutating(method):
                await self._audit(caller, method, rule, request, err.code.name, err.message)
            raise
        if is_mutating(method):
            await self._audit(caller, method, rule, request, "OK", "")
        return response

    async def _authorize(self, session: AsyncSession, caller: Caller, rule: Rule,
                         request: Message) -> set[str] | None:
        """Enforce ``rule``; for listings, return the ids the caller may see."""
        if isinstance(rule, Public | Authenticated):
            return None
        if isinstance(rule, Check):
            resource_id = getattr(request, rule.field) if rule.field else SYSTEM.id
            await authorize(session, caller, rule.permission, rule.kind, resource_id)
            return None
        if isinstance(rule, Listing):
            parent = Resource(rule.parent_kind, getattr(request, rule.parent_field)) \
                if rule.parent_field else SYSTEM
            return await visible_ids(session, caller, rule.permission, rule.kind, parent)
        assert isinstance(rule, OnOperation)
        await self._authorize_operation(session, caller, rule, request.operation_id)
        return None

    @staticmethod
    async def _authorize_operation(session: AsyncSession, caller: Caller, rule: OnOperation,
                                   operation_id: str) -> None:
        """An operation is as visible as its resource; its creator may always read and
        cancel it, even after the resource is gone."""
        op = await session.get(m.Operation, operation_id)
        if op is None:
            raise not_found("operation", operation_id)
        if op.created_by == caller.subject_id:
            return
        try:
            await authorize(session, caller, f"{op.resource_type}.get", op.resource_type,
                            op.resource_id)
            if rule.cancel:
                await authorize(session, caller, CANCEL_PERMISSION[op.resource_type],
                                op.resource_type, op.resource_id)
        except (ApiError, ValueError, KeyError) as err:
            if isinstance(err, ApiError) and err.code == Code.PERMISSION_DENIED:
                raise
            raise not_found("operation", operation_id) from None

    async def _audit(self, caller: Caller, method: MethodDescriptor, rule: Rule | None,
                     request: Message, result: str, message: str) -> None:
        resource_id = ""
        if isinstance(rule, Check) and rule.field:
            resource_id = getattr(request, rule.field)
        elif isinstance(rule, OnOperation):
            resource_id = request.operation_id  # type: ignore[attr-defined]
        try:
            await audit.record(self.runtime.db, caller.subject_id, method.full_name,
                               resource_id, result, message)
        except Exception:  # the call's own outcome stands; the failure is logged loudly
            log.exception("could not write the audit record for %s", method.full_name)
