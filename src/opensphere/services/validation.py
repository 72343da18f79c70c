"""Request validation driven by the ``yandex.cloud.*`` field options in ``proto/``.

Every constraint the contract documents (required, length, pattern, size, value, map keys,
exactly-one oneofs) is checked here, once, for every request, before any service code runs.
"""

from __future__ import annotations

import re
from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from opensphere.proto_gen.yandex.cloud import validation_pb2 as v
from opensphere.services.errors import invalid_argument


def _range(spec: str) -> tuple[int | None, int | None]:
    """Parse "<=63", ">=1", "1-63", "0-1000", "<1000" into inclusive bounds."""
    spec = spec.strip()
    if spec.startswith("<="):
        return None, int(spec[2:])
    if spec.startswith("<"):
        return None, int(spec[1:]) - 1
    if spec.startswith(">="):
        return int(spec[2:]), None
    if spec.startswith(">"):
        return int(spec[1:]) + 1, None
    low, _, high = spec.partition("-")
    return int(low), int(high or low)


def _check_range(path: str, value: int, spec: str, what: str) -> None:
    low, high = _range(spec)
    if low is not None and value < low:
        raise invalid_argument(path, f"{what} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise invalid_argument(path, f"{what} must be at most {high}, got {value}")


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _check_string(path: str, value: str, length: str, pattern: str) -> None:
    if length:
        _check_range(path, len(value), length, "length")
    if pattern and value and not _regex(pattern).fullmatch(value):
        raise invalid_argument(path, f"{value!r} does not match {pattern}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@cache
def _constrained(descriptor: Descriptor) -> bool:
    """Whether any field of this message (or its sub-messages) carries a constraint."""
    for field in descriptor.fields:
        if field.GetOptions().ListFields():
            return True
        if field.message_type is not None and not _is_map(field) and _constrained(
            field.message_type
        ):
            return True
    return any(o.GetOptions().Extensions[v.exactly_one] for o in descriptor.oneofs)


def validate(message: Message, prefix: str = "") -> None:
    """Raise INVALID_ARGUMENT naming the first field that breaks a documented constraint."""
    descriptor = message.DESCRIPTOR
    if not _constrained(descriptor):
        return
    for oneof in descriptor.oneofs:
        if oneof.GetOptions().Extensions[v.exactly_one] and not message.WhichOneof(oneof.name):
            names = " or ".join(prefix + f.name for f in oneof.fields)
            raise invalid_argument(prefix + oneof.name, f"exactly one of {names} is required")
    for field in descriptor.fields:
        _validate_field(message, field, prefix + field.name)


def _validate_field(message: Message, field: FieldDescriptor, path: str) -> None:
    opts = field.GetOptions()
    ext = opts.Extensions
    value = getattr(message, field.name)
    if ext[v.required]:
        present = message.HasField(field.name) if field.has_presence else bool(value)
        if not present:
            raise invalid_argument(path, "is required")
    if _is_map(field):
        if opts.HasExtension(v.size):
            _check_range(path, len(value), ext[v.size], "number of entries")
        key_spec = ext[v.map_key]
        value_type = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            _check_string(f"{path}[{key}]", key, key_spec.length, key_spec.pattern)
            if value_type.type == FieldDescriptor.TYPE_STRING:
                _check_string(f"{path}[{key}]", item, ext[v.length], ext[v.pattern])
        return
    if field.is_repeated:
        if opts.HasExtension(v.size):
            _check_range(path, len(value), ext[v.size], "number of elements")
        items = list(value)
    else:
        items = [value]
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]" if field.is_repeated else path
        if field.type == FieldDescriptor.TYPE_STRING:
            _check_string(item_path, item, ext[v.length], ext[v.pattern])
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated or message.HasField(field.name):
                validate(item, item_path + ".")
        elif opts.HasExtension(v.value) and isinstance(item, int):
            _check_range(item_path, item, ext[v.value], "value")
