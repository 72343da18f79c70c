"""The REST gateway: every ``google.api.http`` rule of the contract, served over HTTP/JSON.

No route is written by hand: ``http_rules`` derives them from the descriptors, this module
only turns HTTP into a request message, runs it through ``Api.call`` and renders the
answer (or the error) with the proto3 JSON mapping.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from opensphere.services.api import Api
from opensphere.services.errors import ApiError, Code
from opensphere.transport import http_rules
from opensphere.transport.openapi import openapi_document

log = logging.getLogger(__name__)


def build_app(api: Api) -> Starlette:
    """The ASGI app: ``/openapi.json`` plus one gateway that dispatches every other path."""
    return Starlette(routes=[
        Route("/openapi.json", _openapi, methods=["GET"]),
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
            response: Response = JSONResponse(_to_json(await self._dispatch(request)))
        except ApiError as err:
            response = _error_response(err)
        except Exception:
            log.exception("REST %s %s failed", request.method, request.url.path)
            response = _error_response(ApiError(Code.INTERNAL, "internal server error"))
        await response(scope, receive, send)

    async def _dispatch(self, request: Request) -> Message:
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else request.url.path
        binding, path_values = http_rules.match(request.method, path)
        message = http_rules.build_request(
            binding, path_values, request.query_params.multi_items(),
            await _json_body(request))
        return await self.api.call(binding.method, message, request.headers.get("authorization"))


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
