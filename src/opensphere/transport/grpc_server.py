"""gRPC transport: generic handlers built from the descriptors (unary, client- and
server-streaming), reflection and health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from opensphere import contract
from opensphere.services.api import Api
from opensphere.services.errors import ApiError, Code

log = logging.getLogger(__name__)
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    return next((v for k, v in context.invocation_metadata() or () if k == "authorization"),
                None)


async def _fail(context: grpc.aio.ServicerContext, method: MethodDescriptor,
                exc: Exception) -> NoReturn:
    """End the call with ``exc`` as its status; anything but an ApiError is INTERNAL."""
    if not isinstance(exc, ApiError):
        log.error("unhandled error in %s", method.full_name, exc_info=exc)
        exc = ApiError(Code.INTERNAL, "internal error")
    status = status_pb2.Status(code=int(exc.code), message=exc.message)
    for detail in exc.details:
        status.details.add().Pack(detail)
    await context.abort(grpc.StatusCode[exc.code.name], exc.message,
                        trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),))
    raise AssertionError("abort returned")


def _unary(api: Api, method: MethodDescriptor) -> Callable[..., Awaitable[Message]]:
    async def handle(request: Message, context: grpc.aio.ServicerContext) -> Message:
        try:
            return await api.call(method, request, _authorization(context))
        except Exception as exc:
            await _fail(context, method, exc)

    return handle


def _client_stream(api: Api, method: MethodDescriptor) -> Callable[..., Awaitable[Message]]:
    async def handle(requests: AsyncIterator[Message],
                     context: grpc.aio.ServicerContext) -> Message:
        try:
            first = await anext(aiter(requests), None)
            if first is None:
                raise ApiError(Code.INVALID_ARGUMENT, "the request stream is empty")
            return await api.call_stream_unary(method, first, requests,
                                               _authorization(context))
        except Exception as exc:
            await _fail(context, method, exc)

    return handle


def _server_stream(api: Api, method: MethodDescriptor) -> Callable[..., AsyncIterator[Message]]:
    async def handle(request: Message,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        try:
            async for message in api.call_unary_stream(method, request,
                                                       _authorization(context)):
                yield message
        except Exception as exc:
            await _fail(context, method, exc)

    return handle


# (client streaming, server streaming) -> grpc's handler factory and our behaviour for it.
_SHAPES: dict[tuple[bool, bool], tuple[Callable[..., grpc.RpcMethodHandler],
                                       Callable[[Api, MethodDescriptor], Callable[..., Any]]]] = {
    (False, False): (grpc.unary_unary_rpc_method_handler, _unary),
    (True, False): (grpc.stream_unary_rpc_method_handler, _client_stream),
    (False, True): (grpc.unary_stream_rpc_method_handler, _server_stream),
}


def _service_handler(api: Api, service: object) -> grpc.GenericRpcHandler:
    handlers = {}
    for method in service.methods:  # type: ignore[attr-defined]
        shape = (method.client_streaming, method.server_streaming)
        if shape not in _SHAPES:
            raise ValueError(f"{method.full_name}: bidirectional streaming is not supported")
        factory, behaviour = _SHAPES[shape]
        handlers[method.name] = factory(
            behaviour(api, method),
            request_deserializer=contract.message_class(method.input_type).FromString,
            response_serializer=contract.message_class(method.output_type).SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)  # type: ignore


def build_server(api: Api) -> grpc.aio.Server:
    """A server with every contract service, reflection and health; ports are added later."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers([_service_handler(api, s) for s in contract.services()])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.full_name for s in contract.services()]
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)
    server.health_servicer = health_servicer  # type: ignore[attr-defined]
    return server


def add_port(server: grpc.aio.Server, address: str, cert: bytes | None, key: bytes | None) -> int:
    """Bind ``address``; TLS when a certificate and key are given. Returns the bound port."""
    if cert and key:
        return server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    return server.add_insecure_port(address)
