"""The contract as loaded descriptors: which services we serve and their message classes."""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from opensphere.proto_gen.opensphere.v1 import (
    execution_service_pb2,
    file_service_pb2,
    iam_service_pb2,
    organization_service_pb2,
    token_service_pb2,
    usage_service_pb2,
)
from opensphere.proto_gen.yandex.cloud.datasphere.v2 import (
    community_service_pb2,
    project_service_pb2,
)
from opensphere.proto_gen.yandex.cloud.endpoint import api_endpoint_service_pb2
from opensphere.proto_gen.yandex.cloud.operation import operation_service_pb2

SERVED_FILES = (
    community_service_pb2,
    project_service_pb2,
    operation_service_pb2,
    api_endpoint_service_pb2,
    organization_service_pb2,
    token_service_pb2,
    iam_service_pb2,
    usage_service_pb2,
    file_service_pb2,
    execution_service_pb2,
)


def services() -> list[ServiceDescriptor]:
    """Every service in the contract, in a stable order."""
    return [s for mod in SERVED_FILES for s in mod.DESCRIPTOR.services_by_name.values()]


def methods() -> list[MethodDescriptor]:
    return [m for s in services() for m in s.methods]


@cache
def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def struct_json(struct: Message) -> Any:
    """A ``Struct`` as plain JSON. Its numbers are all doubles, so whole ones become ints
    again: an input of 21 must reach the notebook as "21", not "21.0"."""
    return _whole(json_format.MessageToDict(struct))


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def grpc_path(method: MethodDescriptor) -> str:
    """The HTTP/2 path gRPC uses for a method: ``/package.Service/Method``."""
    return f"/{method.containing_service.full_name}/{method.name}"
