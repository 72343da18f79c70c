"""The REST surface as data: one ``Binding`` per ``google.api.http`` rule in the contract.

The gateway (``rest.py``) serves this table and the OpenAPI generator documents it, so
what is served and what is documented cannot drift apart. Requests are built by the
``google.api.http`` rules through the proto3 JSON mapping: the body, then query
parameters, then path variables, each overriding what came before.

Streaming methods carry raw bytes instead of JSON, by one convention: a client-streaming
method's ``body`` names a ``bytes`` field, and the HTTP body is streamed into a message per
chunk after a first message built from the path and query; a server-streaming method's
``response_body`` names a ``bytes`` field, and the HTTP response is that field of every
message, in order, while the first message's ``content_type`` and ``size`` fields (where
the response type has them) become ``Content-Type`` and ``Content-Length``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from opensphere import contract
from opensphere.services.errors import ApiError, Code, invalid_argument

FieldPath = tuple[FieldDescriptor, ...]

# Messages whose JSON form is one string, number or bool, so a path or query value can set them.
WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
TEXT_MESSAGES = WRAPPERS | {
    "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
_BOOLS = {"true": True, "false": False}
_SEGMENT = "[^/:]+"
_SEGMENTS = "[^:]+"
_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]+))?\}")


class MethodNotAllowed(ApiError):
    """The path is known but not for this HTTP method; ``allowed`` lists the ones it takes."""

    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        message = f"{method} is not allowed on {path}; use {', '.join(allowed)}"
        super().__init__(Code.UNIMPLEMENTED, message)
        self.allowed = allowed


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def is_text(field: FieldDescriptor) -> bool:
    """Whether a path variable or query parameter can set this field (repeated or not)."""
    if is_map(field):
        return False
    return field.message_type is None or field.message_type.full_name in TEXT_MESSAGES


def is_nested(field: FieldDescriptor) -> bool:
    """Whether a dotted path may go through this field into its sub-message."""
    return not field.is_repeated and not is_text(field)


def dotted(path: FieldPath) -> str:
    """The camelCase name a client uses for ``path`` (``settings.commitMode``)."""
    return ".".join(field.json_name for field in path)


def resolve(descriptor: Descriptor, name: str) -> FieldPath | None:
    """The fields a dotted name (proto or camelCase spelling per part) walks, or None."""
    path: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for part in name.split("."):
        if current is None:
            return None
        by_json = {field.json_name: field for field in current.fields}
        field = current.fields_by_name.get(part) or by_json.get(part)
        if field is None:
            return None
        path.append(field)
        current = field.message_type if is_nested(field) else None
    return tuple(path) if is_text(path[-1]) else None


@dataclass(frozen=True)
class Binding:
    """One HTTP method + path template that runs one RPC."""

    method: MethodDescriptor
    index: int  # 0 for the rule itself, then one per additional binding
    http_method: str
    template: str
    body: str  # "" (no body), "*" (whole request) or the name of the one field it fills
    response_body: str  # "" (the response as JSON) or the bytes field streamed raw
    variables: tuple[FieldPath, ...]
    regex: re.Pattern[str]
    rank: tuple[int, ...]  # per segment: 0 literal, 1 one segment, 2 many; lower wins

    @property
    def raw_request(self) -> bool:
        """Whether the HTTP body is raw bytes streamed into the ``body`` field."""
        return self.method.client_streaming

    @property
    def operation_id(self) -> str:
        name = f"{self.method.containing_service.name}_{self.method.name}"
        return name + (str(self.index + 1) if self.index else "")

    @property
    def openapi_path(self) -> str:
        """The template with camelCase variables and no ``=pattern`` parts."""
        names = iter(dotted(variable) for variable in self.variables)
        return _VARIABLE.sub(lambda _: "{" + next(names) + "}", self.template)

    def match(self, path: str) -> dict[FieldPath, str] | None:
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {var: unquote(value) for var, value in zip(self.variables, found.groups(),
                                                          strict=True)}


def _split_verb(template: str) -> tuple[str, str]:
    """``("/a/{b}", "verb")`` for ``/a/{b}:verb``; the verb follows the last segment."""
    colon = template.find(":", max(template.rfind("/"), template.rfind("}")))
    return (template, "") if colon < 0 else (template[:colon], template[colon + 1:])


def _segment(segment: str, ranks: list[int]) -> str:
    """Regex for a literal segment or a ``*`` / ``**`` wildcard, recording its rank."""
    rank = {"*": 1, "**": 2}.get(segment, 0)
    ranks.append(rank)
    return (re.escape(segment), _SEGMENT, _SEGMENTS)[rank]


def _compile(template: str, request: Descriptor
             ) -> tuple[re.Pattern[str], tuple[FieldPath, ...], list[int]]:
    """The template as a regex with one group per variable, its variables and segment ranks."""
    path, verb = _split_verb(template)
    parts: list[str] = []
    variables: list[FieldPath] = []
    ranks: list[int] = []
    for token in re.findall(r"\{[^}]*\}|[^/]+", path):
        variable = _VARIABLE.fullmatch(token)
        if variable is None:
            parts.append(_segment(token, ranks))
            continue
        field = resolve(request, variable.group(1))
        if field is None:
            raise ValueError(f"{template}: {variable.group(1)} is not a settable field")
        variables.append(field)
        inner = (variable.group(2) or "*").split("/")
        parts.append("(" + "/".join(_segment(s, ranks) for s in inner) + ")")
    suffix = ":" + re.escape(verb) if verb else ""
    return re.compile("/" + "/".join(parts) + suffix), tuple(variables), ranks


def _rules(method: MethodDescriptor) -> list[http_pb2.HttpRule]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def _binding(method: MethodDescriptor, index: int, rule: http_pb2.HttpRule) -> Binding | None:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return None
    _check_streaming(method, rule)
    http_method, template = ((rule.custom.kind, rule.custom.path) if kind == "custom"
                             else (kind.upper(), getattr(rule, kind)))
    regex, variables, ranks = _compile(template, method.input_type)
    return Binding(method=method, index=index, http_method=http_method.upper(),
                   template=template, body=rule.body, response_body=rule.response_body,
                   variables=variables, regex=regex, rank=tuple(ranks))


def _is_bytes(message: Descriptor, name: str) -> bool:
    field = message.fields_by_name.get(name)
    return field is not None and field.type == FieldDescriptor.TYPE_BYTES and \
        not field.is_repeated


def _check_streaming(method: MethodDescriptor, rule: http_pb2.HttpRule) -> None:
    """Raw bytes are the only REST form of a stream, and the only use of response_body."""
    if method.client_streaming and method.server_streaming:
        raise ValueError(f"{method.full_name}: bidirectional streams have no REST form")
    if method.client_streaming and not _is_bytes(method.input_type, rule.body):
        raise ValueError(f"{method.full_name}: a client stream's body must name a bytes field")
    if method.server_streaming != bool(rule.response_body) or (
            rule.response_body and not _is_bytes(method.output_type, rule.response_body)):
        raise ValueError(f"{method.full_name}: a server stream, and only it, has a "
                         "response_body naming a bytes field")


@cache
def bindings() -> tuple[Binding, ...]:
    """Every rule of every served method, most specific template first."""
    found = [binding for method in contract.methods()
             for index, rule in enumerate(_rules(method))
             if (binding := _binding(method, index, rule)) is not None]
    return tuple(sorted(found, key=lambda b: b.rank))


def match(http_method: str, path: str) -> tuple[Binding, dict[FieldPath, str]]:
    """The binding for a request, NOT_FOUND for an unknown path, or ``MethodNotAllowed``."""
    allowed: list[str] = []
    for binding in bindings():
        values = binding.match(path)
        if values is None:
            continue
        if binding.http_method == http_method:
            return binding, values
        allowed.append(binding.http_method)
    if allowed:
        raise MethodNotAllowed(http_method, path, sorted(set(allowed)))
    raise ApiError(Code.NOT_FOUND, f"no API method at {path}")


def build_request(binding: Binding, path_values: Mapping[FieldPath, str],
                  query: Iterable[tuple[str, str]], body: Any) -> Message:
    """The request message: body first, then query parameters, then path variables win.
    For a raw request ``body`` is ignored: it is the first message of a stream."""
    request = contract.message_class(binding.method.input_type)()
    if binding.body in ("", "*"):
        if not isinstance(body, dict):
            raise ApiError(Code.INVALID_ARGUMENT, "the request body must be a JSON object")
        _parse(body, request)
    elif not binding.raw_request:
        _parse({request.DESCRIPTOR.fields_by_name[binding.body].json_name: body}, request)
    if binding.body != "*":
        _parse(_query_json(binding, query), request)
    path_json: dict[str, Any] = {}
    for path, value in path_values.items():
        _assign(path_json, path, [value])
    _parse(path_json, request)
    return request


def _parse(data: dict[str, Any], request: Message) -> None:
    try:
        json_format.ParseDict(data, request)
    except json_format.ParseError as err:
        first_line = str(err).split("\n", 1)[0]
        raise ApiError(Code.INVALID_ARGUMENT, f"invalid request: {first_line}") from None


def _query_json(binding: Binding, query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters as the JSON object they stand for (repeated names become lists)."""
    request = binding.method.input_type
    grouped: dict[FieldPath, list[str]] = {}
    for name, value in query:
        path = resolve(request, name)
        if path is None or (binding.body and path[0].name == binding.body):
            raise invalid_argument(name, f"is not a query parameter of {request.name}")
        grouped.setdefault(path, []).append(value)
    result: dict[str, Any] = {}
    for path, values in grouped.items():
        _assign(result, path, values)
    return result


def _assign(target: dict[str, Any], path: FieldPath, values: list[str]) -> None:
    *parents, leaf = path
    for field in parents:
        target = target.setdefault(field.json_name, {})
    if not leaf.is_repeated and len(values) > 1:
        raise invalid_argument(dotted(path), "is given more than once")
    converted = [_json_value(leaf, dotted(path), value) for value in values]
    target[leaf.json_name] = converted if leaf.is_repeated else converted[0]


def _json_value(field: FieldDescriptor, name: str, text: str) -> Any:
    """Text as its JSON value: only bools differ, the JSON mapping reads the rest as strings."""
    wrapper = field.message_type.full_name if field.message_type else ""
    if field.type != FieldDescriptor.TYPE_BOOL and wrapper != "google.protobuf.BoolValue":
        return text
    if text not in _BOOLS:
        raise invalid_argument(name, f"expected true or false, got {text!r}")
    return _BOOLS[text]
