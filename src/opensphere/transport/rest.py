"""The REST gateway: every ``google.api.http`` rule of the contract, served over HTTP/JSON.

No route is written by hand: ``http_rules`` derives them from the descriptors, this module
only turns HTTP into a request message, runs it through ``Api`` and renders the answer
(or the error) with the proto3 JSON mapping. Streaming methods carry raw bytes both ways
(see ``http_rules``), streamed chunk by chunk, never held whole.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from opensphere import contract
from opensphere.services.api import Api
from opensphere.services.errors import ApiError, Code
from opensphere.transport import http_rules
from opensphere.transport.openapi import openapi_document

log = logging.getLogger(__name__)


def build_app(api: Api, ide: ASGIApp) -> Starlette:
    """The ASGI app: ``/openapi.json``, the project IDEs under ``/ide`` (``ide``), and one
    gateway that dispatches every other path."""
    return Starlette(routes=[
        Route("/openapi.json", _openapi, methods=["GET"]),
        Mount("/ide", app=ide),
        Route("/{path:path}", _Gateway(api)),
    ])


async def _openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document())


def _to_json(message: Message) -> dict[str, Any]:
    """Proto3 JSON mapping, printing defaults too: clients read ``done: false`` or an empty
    ``nextPageToken`` as keys that are there, not as keys that may be missing."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _error_response(err: ApiError) -> JSONResponse:
    """``{"code", "message", "details"}`` (a ``google.rpc.Status``) with the matching status."""
    status = status_pb2.Status(code=int(err.code), message=err.message)
    for detail in err.details:
        status.details.add().Pack(detail)
    if isinstance(err, http_rules.MethodNotAllowed):
        return JSONResponse(_to_json(status), status_code=405,
                            headers={"Allow": ", ".join(err.allowed)})
    return JSONResponse(_to_json(status), status_code=err.code.http_status)


class _Gateway:
    """An ASGI app (so Starlette hands it every method) that runs one RPC per request."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._dispatch(request)
        except ApiError as err:
            response = _error_response(err)
        except Exception:
            log.exception("REST %s %s failed", request.method, request.url.path)
            response = _error_response(ApiError(Code.INTERNAL, "internal server error"))
        await response(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else request.url.path
        binding, path_values = http_rules.match(request.method, path)
        authorization = request.headers.get("authorization")
        query = request.query_params.multi_items()
        if binding.raw_request:
            first = http_rules.build_request(binding, path_values, query, None)
            reply = await self.api.call_stream_unary(
                binding.method, first, _raw_body(binding, request), authorization)
            return JSONResponse(_to_json(reply))
        message = http_rules.build_request(binding, path_values, query,
                                           await _json_body(request))
        if binding.response_body:
            return await _raw_response(
                binding, self.api.call_unary_stream(binding.method, message, authorization))
        return JSONResponse(_to_json(await self.api.call(binding.method, message,
                                                         authorization)))


async def _raw_body(binding: http_rules.Binding, request: Request) -> AsyncIterator[Message]:
    """The HTTP body as a message per received piece, its bytes in the ``body`` field."""
    message_class = contract.message_class(binding.method.input_type)
    try:
        async for piece in request.stream():
            if piece:
                yield message_class(**{binding.body: piece})
    except ClientDisconnect:
        raise ApiError(Code.CANCELLED, "the client went away before the body ended") from None


async def _raw_response(binding: http_rules.Binding,
                        stream: AsyncIterator[Message]) -> Response:
    """The ``response_body`` field of every message as the body. The first message is
    awaited before any header goes out, so a refusal is still an ordinary error response;
    a failure after that can only cut the body short."""
    first = await anext(stream)
    fields = first.DESCRIPTOR.fields_by_name
    headers = {"Content-Length": str(first.size)} if "size" in fields else {}  # type: ignore

    async def body() -> AsyncIterator[bytes]:
        try:
            yield getattr(first, binding.response_body)
            async for message in stream:
                yield getattr(message, binding.response_body)
        except ApiError as err:
            log.warning("REST %s cut short: %s", binding.method.full_name, err.message)
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    media_type = getattr(first, "content_type", "") or "application/octet-stream"
    return StreamingResponse(body(), headers=headers, media_type=media_type)


async def _json_body(request: Request) -> Any:
    """The body as JSON whatever its Content-Type (``curl -d`` sends a form type); {} if empty."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as err:
        message = f"the request body is not valid JSON: {err}"
        raise ApiError(Code.INVALID_ARGUMENT, message) from None
