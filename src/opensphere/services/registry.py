"""Maps each RPC's full name to its one implementation.

Service modules decorate their functions with ``@rpc("pkg.Service", "Method")``; the
transports never call service code any other way than through ``services.api.Api``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message

from opensphere.services.context import CallContext

Handler = Callable[[CallContext, Any], Awaitable[Message]]

HANDLERS: dict[str, Handler] = {}


def rpc(service: str, method: str) -> Callable[[Handler], Handler]:
    """Register ``func`` as the implementation of ``service.method``."""
    name = f"{service}.{method}"

    def register(func: Handler) -> Handler:
        if name in HANDLERS:
            raise RuntimeError(f"{name} is implemented twice")
        HANDLERS[name] = func
        return func

    return register
