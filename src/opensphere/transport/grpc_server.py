"""gRPC transport: generic handlers built from the descriptors, reflection and health."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

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


def _behaviour(api: Api, method: MethodDescriptor
               ) -> Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]:
    async def handle(request: Message, context: grpc.aio.ServicerContext) -> Message:
        authorization = next((v for k, v in context.invocation_metadata() or ()
                              if k == "authorization"), None)
        try:
            return await api.call(method, request, authorization)
        except ApiError as err:
            await _abort(context, err)
        except Exception:
            log.exception("unhandled error in %s", method.full_name)
            await _abort(context, ApiError(Code.INTERNAL, "internal error"))
        raise AssertionError("unreachable")

    return handle


async def _abort(context: grpc.aio.ServicerContext, err: ApiError) -> None:
    status = status_pb2.Status(code=int(err.code), message=err.message)
    for detail in err.details:
        status.details.add().Pack(detail)
    await context.abort(grpc.StatusCode[err.code.name], err.message,
                        trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),))


def _service_handler(api: Api, service: object) -> grpc.GenericRpcHandler:
    handlers = {}
    for method in service.methods:  # type: ignore[attr-defined]
        request_cls = contract.message_class(method.input_type)
        response_cls = contract.message_class(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _behaviour(api, method),
            request_deserializer=request_cls.FromString,
            response_serializer=response_cls.SerializeToString,
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
