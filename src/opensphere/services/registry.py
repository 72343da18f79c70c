"""Maps each RPC's full name to its one implementation.

Service modules decorate their functions with ``@rpc("pkg.Service", "Method")``; the
transports never call service code any other way than through ``services.api.Api``.
A unary handler takes ``(ctx, request)``; a client-streaming one ``(ctx, first, rest)``,
where ``first`` is the message that was authorized; a server-streaming one is an async
generator over ``(ctx, request)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from opensphere.services.context import CallContext

Unary = Callable[[CallContext, Any], Awaitable[Message]]
ClientStream = Callable[[CallContext, Any, AsyncIterator[Any]], Awaitable[Message]]
ServerStream = Callable[[CallContext, Any], AsyncIterator[Message]]
Handler = Unary | ClientStream | ServerStream
H = TypeVar("H", Unary, ClientStream, ServerStream)

HANDLERS: dict[str, Handler] = {}


def rpc(service: str, method: str) -> Callable[[H], H]:
    """Register ``func`` as the implementation of ``service.method``."""
    name = f"{service}.{method}"

    def register(func: H) -> H:
        if name in HANDLERS:
            raise RuntimeError(f"{name} is implemented twice")
        HANDLERS[name] = func
        return func

    return register
