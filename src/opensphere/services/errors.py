"""Transport-neutral API errors: a gRPC status code, a message, optional detail messages."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from google.protobuf.message import Message


class Code(IntEnum):
    """``google.rpc.Code`` values, with the HTTP status each maps to."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def http_status(self) -> int:
        return _HTTP[self]


_HTTP = {
    Code.OK: 200, Code.CANCELLED: 499, Code.UNKNOWN: 500, Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504, Code.NOT_FOUND: 404, Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403, Code.RESOURCE_EXHAUSTED: 429, Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409, Code.OUT_OF_RANGE: 400, Code.UNIMPLEMENTED: 501, Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503, Code.DATA_LOSS: 500, Code.UNAUTHENTICATED: 401,
}


class ApiError(Exception):
    """Raised by service code; each transport renders it in its own way."""

    def __init__(self, code: Code, message: str, details: Sequence[Message] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)


def invalid_argument(field: str, problem: str) -> ApiError:
    """An INVALID_ARGUMENT that names the offending field, with a BadRequest detail."""
    from google.rpc import error_details_pb2

    detail = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(
            field=field, description=problem)]
    )
    return ApiError(Code.INVALID_ARGUMENT, f"{field}: {problem}", [detail])


def not_found(kind: str, resource_id: str) -> ApiError:
    return ApiError(Code.NOT_FOUND, f"{kind} {resource_id} not found")
