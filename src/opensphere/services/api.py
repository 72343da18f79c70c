"""The single entry point both transports call: authenticate, validate, dispatch."""

from __future__ import annotations

import importlib

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from opensphere.iam.tokens import authenticate
from opensphere.runtime import Runtime
from opensphere.services.context import CallContext, Caller
from opensphere.services.errors import ApiError, Code
from opensphere.services.registry import HANDLERS, PUBLIC
from opensphere.services.validation import validate

SERVICE_MODULES = (
    "communities", "projects", "operations", "endpoints", "organizations", "tokens",
)
ANONYMOUS = Caller(subject_id="", subject_type="anonymous")

for _module in SERVICE_MODULES:
    importlib.import_module(f"opensphere.services.{_module}")


class Api:
    """Runs one RPC for a transport. Every call goes through ``call``; nothing else decides."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def call(self, method: MethodDescriptor, request: Message,
                   authorization: str | None) -> Message:
        name = method.full_name
        if name in PUBLIC:
            caller = ANONYMOUS
        else:
            async with self.runtime.db.session() as session:
                caller = await authenticate(session, authorization)
        handler = HANDLERS.get(name)
        if handler is None:
            raise ApiError(
                Code.UNIMPLEMENTED,
                f"{method.containing_service.name}.{method.name} is part of the DataSphere API "
                "but is not available in this OpenSphere release yet",
            )
        validate(request)
        return await handler(CallContext(caller=caller, runtime=self.runtime), request)
