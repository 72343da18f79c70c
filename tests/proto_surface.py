"""The wire-visible surface of a set of compiled .proto files, as plain JSON data.

OpenSphere promises that clients built on the official Yandex Cloud SDK work
unchanged, so ``test_contract.py`` compares our generated modules against the
SDK's. Both register the same proto file names in protobuf's global descriptor
pool and cannot share a process; this module is therefore imported in-process
for our side and run as a script (``python tests/proto_surface.py sdk``) for
the SDK's side, and the two JSON dumps are compared.
"""

from __future__ import annotations

import importlib
import json
import sys
from types import ModuleType
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FileDescriptor

OURS = "opensphere.proto_gen."
SDK = ""

# Every proto file OpenSphere ships, by module path below the package prefix.
MODULES = [
    "yandex.cloud.datasphere.v2.community_pb2",
    "yandex.cloud.datasphere.v2.community_service_pb2",
    "yandex.cloud.datasphere.v2.project_pb2",
    "yandex.cloud.datasphere.v2.project_service_pb2",
    "yandex.cloud.datasphere.v2.restrictions_pb2",
    "yandex.cloud.datasphere.v2.resource_types_pb2",
    "yandex.cloud.operation.operation_pb2",
    "yandex.cloud.operation.operation_service_pb2",
    "yandex.cloud.access.access_pb2",
    "yandex.cloud.endpoint.api_endpoint_pb2",
    "yandex.cloud.endpoint.api_endpoint_service_pb2",
    "yandex.cloud.api.operation_pb2",
    "yandex.cloud.validation_pb2",
]

Surface = dict[str, Any]


def _type_name(name: str) -> str:
    return name.removeprefix(".")


def _field(proto: descriptor_pb2.FieldDescriptorProto, oneofs: list[str]) -> dict[str, Any]:
    # A proto3 `optional` is a synthetic oneof: presence only, not an API-visible oneof.
    real_oneof = proto.HasField("oneof_index") and not proto.proto3_optional
    return {
        "name": proto.name,
        "number": proto.number,
        "type": descriptor_pb2.FieldDescriptorProto.Type.Name(proto.type),
        "label": descriptor_pb2.FieldDescriptorProto.Label.Name(proto.label),
        "type_name": _type_name(proto.type_name),
        "oneof": oneofs[proto.oneof_index] if real_oneof else None,
        "proto3_optional": proto.proto3_optional,
    }


def _enum(proto: descriptor_pb2.EnumDescriptorProto) -> dict[str, int]:
    return {value.name: value.number for value in proto.value}


def _message(
    proto: descriptor_pb2.DescriptorProto, scope: str, file_name: str, out: Surface
) -> None:
    full = f"{scope}.{proto.name}"
    oneofs = [o.name for o in proto.oneof_decl]
    out["messages"][full] = {
        "file": file_name,
        "fields": {str(f.number): _field(f, oneofs) for f in proto.field},
    }
    for nested in proto.nested_type:
        _message(nested, full, file_name, out)
    for enum in proto.enum_type:
        out["enums"][f"{full}.{enum.name}"] = _enum(enum)


def _method_options(options: Any, operation_ext: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"http": None, "operation": None}
    if options.HasExtension(annotations_pb2.http):
        rule = json_format.MessageToDict(
            options.Extensions[annotations_pb2.http], preserving_proto_field_name=True
        )
        # OpenSphere adds extra REST paths as additional bindings; the SDK never has them.
        rule.pop("additional_bindings", None)
        found["http"] = rule
    if options.HasExtension(operation_ext):
        found["operation"] = json_format.MessageToDict(
            options.Extensions[operation_ext], preserving_proto_field_name=True
        )
    return found


def _file(descriptor: FileDescriptor, operation_ext: Any, out: Surface) -> None:
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    package = proto.package
    for message in proto.message_type:
        _message(message, package, proto.name, out)
    for enum in proto.enum_type:
        out["enums"][f"{package}.{enum.name}"] = _enum(enum)
    for ext in proto.extension:
        out["extensions"][f"{package}.{ext.name}"] = {
            "name": ext.name,
            "number": ext.number,
            "type": descriptor_pb2.FieldDescriptorProto.Type.Name(ext.type),
            "label": descriptor_pb2.FieldDescriptorProto.Label.Name(ext.label),
            "type_name": _type_name(ext.type_name),
            "extendee": _type_name(ext.extendee),
        }
    for service in proto.service:
        service_desc = descriptor.services_by_name[service.name]
        methods = {}
        for method in service.method:
            methods[method.name] = {
                "input_type": _type_name(method.input_type),
                "output_type": _type_name(method.output_type),
                "client_streaming": method.client_streaming,
                "server_streaming": method.server_streaming,
                **_method_options(
                    service_desc.methods_by_name[method.name].GetOptions(), operation_ext
                ),
            }
        out["services"][f"{package}.{service.name}"] = {"file": proto.name, "methods": methods}


def surface(prefix: str, names: list[str] | None = None) -> Surface:
    """Services, messages, enums and extensions of ``names`` (default ``MODULES``).

    A module that does not exist under ``prefix`` is listed in ``missing_files``
    instead: OpenSphere may ship proto files the SDK does not have.
    """
    operation_ext = importlib.import_module(prefix + "yandex.cloud.api.operation_pb2").operation
    out: Surface = {"services": {}, "messages": {}, "enums": {}, "extensions": {}}
    missing: list[str] = []
    for name in names or MODULES:
        if not prefix and not name.startswith("yandex."):
            # The SDK only has `yandex.*`; never let a lookup wander into other packages.
            missing.append(name)
            continue
        try:
            module: ModuleType = importlib.import_module(prefix + name)
        except ModuleNotFoundError:
            missing.append(name)
            continue
        _file(module.DESCRIPTOR, operation_ext, out)
    out["missing_files"] = missing
    return out


def main() -> None:
    """``proto_surface.py sdk|ours [MODULE...]``: print the surface as JSON on stdout."""
    which = sys.argv[1] if len(sys.argv) > 1 else "sdk"
    result = surface({"sdk": SDK, "ours": OURS}[which], sys.argv[2:] or None)
    if which == "sdk":
        from importlib.metadata import version

        result["sdk_version"] = version("yandexcloud")
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
