"""OpenAPI 3.1 for the REST gateway, generated from the route table the gateway serves.

Schemas follow the proto3 JSON mapping, so the document describes the JSON on the wire:
camelCase names, 64-bit integers as strings, well-known types in their JSON forms.
Streaming methods, which REST serves as raw bytes, get binary bodies instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, MethodDescriptor
from google.rpc import status_pb2

from opensphere import __version__
from opensphere.proto_gen.yandex.cloud import validation_pb2
from opensphere.proto_gen.yandex.cloud.api import operation_pb2 as api_operation_pb2
from opensphere.transport import http_rules
from opensphere.transport.http_rules import Binding, FieldPath

Schema = dict[str, Any]
_F = FieldDescriptor
_INT64: Schema = {"type": "string", "format": "int64"}
_UINT64: Schema = {"type": "string", "format": "uint64"}
_INT32: Schema = {"type": "integer", "format": "int32"}
_UINT32: Schema = {"type": "integer", "format": "uint32", "minimum": 0}
_SCALARS: dict[int, Schema] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT64: _INT64, _F.TYPE_SINT64: _INT64, _F.TYPE_SFIXED64: _INT64,
    _F.TYPE_UINT64: _UINT64, _F.TYPE_FIXED64: _UINT64,
    _F.TYPE_INT32: _INT32, _F.TYPE_SINT32: _INT32, _F.TYPE_SFIXED32: _INT32,
    _F.TYPE_UINT32: _UINT32, _F.TYPE_FIXED32: _UINT32,
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_ANY: Schema = {
    "type": "object",
    "properties": {"@type": {"type": "string", "description": "type URL of the packed message"}},
    "required": ["@type"],
}
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d{1,9})?s$"},
    "google.protobuf.FieldMask": {
        "type": "string", "description": "comma-separated camelCase field paths"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": _ANY,
}
_SECURITY = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document: one operation per ``google.api.http`` rule the gateway serves."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Schema]] = {}
    for binding in http_rules.bindings():
        item = paths.setdefault(binding.openapi_path, {})
        item[binding.http_method.lower()] = _operation(schemas, binding)
    return {
        "openapi": "3.1.0",
        "info": {"title": "OpenSphere REST API (DataSphere API v2)", "version": __version__},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.components.items())),
                       "securitySchemes": _SECURITY},
        "security": [{"bearerAuth": []}],
    }


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _required(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().Extensions[validation_pb2.required])


class _Schemas:
    """Schemas for fields and messages; named messages and enums land in ``components``."""

    def __init__(self) -> None:
        self.components: dict[str, Schema] = {}

    def message(self, descriptor: Descriptor) -> Schema:
        name = descriptor.full_name
        if name in http_rules.WRAPPERS:
            return self._value(descriptor.fields_by_name["value"])
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in self.components:
            self.components[name] = {}  # reserve the name first: messages may nest themselves
            self.components[name] = self.object(descriptor)
        return _ref(name)

    def object(self, descriptor: Descriptor, exclude: frozenset[str] = frozenset()) -> Schema:
        fields = [f for f in descriptor.fields if f.name not in exclude]
        schema: Schema = {"type": "object",
                          "properties": {f.json_name: self.field(f) for f in fields}}
        required = [f.json_name for f in fields if _required(f)]
        if required:
            schema["required"] = required
        return schema

    def field(self, field: FieldDescriptor) -> Schema:
        if http_rules.is_map(field):
            value = field.message_type.fields_by_name["value"]
            schema = {"type": "object", "additionalProperties": self._value(value)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self._value(field)}
        else:
            schema = self._value(field)
        if field.GetOptions().deprecated:
            schema["deprecated"] = True
        return schema

    def _value(self, field: FieldDescriptor) -> Schema:
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self._enum(field.enum_type)
        return dict(_SCALARS[field.type])

    def _enum(self, descriptor: EnumDescriptor) -> Schema:
        if descriptor.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        names = [value.name for value in descriptor.values]
        self.components.setdefault(descriptor.full_name, {"type": "string", "enum": names})
        return _ref(descriptor.full_name)


def _operation(schemas: _Schemas, binding: Binding) -> Schema:
    method = binding.method
    service = method.containing_service.name
    operation: Schema = {
        "operationId": binding.operation_id,
        "summary": f"{service}.{method.name}",
        "tags": [service],
        "parameters": _path_parameters(schemas, binding) + _query_parameters(schemas, binding),
        "responses": {
            "200": _success(schemas, binding),
            "default": {"description": "An error (a google.rpc.Status)",
                        "content": _json(schemas.message(status_pb2.Status.DESCRIPTOR))},
        },
    }
    if binding.raw_request:
        operation["requestBody"] = {"required": True, "content": _BINARY,
                                    "description": "The raw bytes, streamed"}
    elif binding.body:
        operation["requestBody"] = {"required": True, "content": _json(_body(schemas, binding))}
    return operation


def _success(schemas: _Schemas, binding: Binding) -> Schema:
    if binding.response_body:
        return {"description": "The raw bytes, with Content-Type and Content-Length",
                "content": _BINARY}
    return {"description": "OK", "content": _json(_response(schemas, binding.method))}


def _path_parameters(schemas: _Schemas, binding: Binding) -> list[Schema]:
    return [{"name": http_rules.dotted(path), "in": "path", "required": True,
             "schema": schemas.field(path[-1])} for path in binding.variables]


def _query_parameters(schemas: _Schemas, binding: Binding) -> list[Schema]:
    """Every field a query parameter can set: not bound by the path, not in the body."""
    if binding.body == "*":
        return []
    return [{"name": http_rules.dotted(path), "in": "query",
             "required": len(path) == 1 and _required(path[0]),
             "schema": schemas.field(path[-1])}
            for path in _text_paths(binding.method.input_type)
            if path not in binding.variables and path[0].name != binding.body]


def _text_paths(descriptor: Descriptor, parents: FieldPath = ()) -> Iterator[FieldPath]:
    """Paths to the fields ``http_rules.resolve`` accepts, nested messages flattened."""
    for field in descriptor.fields:
        path = (*parents, field)
        if http_rules.is_text(field):
            yield path
        elif http_rules.is_nested(field) and field.message_type not in [
                f.message_type for f in parents]:
            yield from _text_paths(field.message_type, path)


def _body(schemas: _Schemas, binding: Binding) -> Schema:
    request = binding.method.input_type
    if binding.body != "*":
        return schemas.field(request.fields_by_name[binding.body])
    bound = frozenset(path[0].name for path in binding.variables if len(path) == 1)
    return schemas.object(request, exclude=bound)


def _response(schemas: _Schemas, method: MethodDescriptor) -> Schema:
    """The output schema; for an Operation, with the metadata and response types it packs."""
    schema = schemas.message(method.output_type)
    options = method.GetOptions()
    if not options.HasExtension(api_operation_pb2.operation):
        return schema
    declared = options.Extensions[api_operation_pb2.operation]
    packed = {field: {"allOf": [_ANY, schemas.message(_declared_type(method, type_name))]}
              for field, type_name in (("metadata", declared.metadata),
                                       ("response", declared.response)) if type_name}
    return {"allOf": [schema, {"type": "object", "properties": packed}]}


def _declared_type(method: MethodDescriptor, name: str) -> Descriptor:
    """A type named in ``(yandex.cloud.api.operation)``: relative to the method's package."""
    file = method.containing_service.file
    try:
        return file.pool.FindMessageTypeByName(f"{file.package}.{name}")
    except KeyError:
        return file.pool.FindMessageTypeByName(name)
