"""ApiEndpointService: tells SDKs that every service lives at this server's gRPC address."""

from __future__ import annotations

from opensphere.proto_gen.yandex.cloud.endpoint import api_endpoint_pb2, api_endpoint_service_pb2
from opensphere.services.context import CallContext
from opensphere.services.errors import not_found
from opensphere.services.registry import rpc

SERVICE = "yandex.cloud.endpoint.ApiEndpointService"
# The endpoint ids the official SDK looks up; "iam" is where it would verify credentials.
ENDPOINT_IDS = ("datasphere", "operation", "iam", "endpoint", "resourcemanager",
                "organizationmanager")


def _endpoints(ctx: CallContext) -> list[api_endpoint_pb2.ApiEndpoint]:
    address = ctx.runtime.advertised_grpc_address
    return [api_endpoint_pb2.ApiEndpoint(id=i, address=address) for i in ENDPOINT_IDS]


@rpc(SERVICE, "List")
async def list_(ctx: CallContext, request: api_endpoint_service_pb2.ListApiEndpointsRequest
                ) -> api_endpoint_service_pb2.ListApiEndpointsResponse:
    return api_endpoint_service_pb2.ListApiEndpointsResponse(endpoints=_endpoints(ctx))


@rpc(SERVICE, "Get")
async def get(ctx: CallContext, request: api_endpoint_service_pb2.GetApiEndpointRequest
              ) -> api_endpoint_pb2.ApiEndpoint:
    for endpoint in _endpoints(ctx):
        if endpoint.id == request.api_endpoint_id:
            return endpoint
    raise not_found("endpoint", request.api_endpoint_id)
