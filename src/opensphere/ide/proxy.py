"""Forward one HTTP request or WebSocket from the gateway to a Lab, with the Lab's token.

The Lab's token only travels from here to the Lab: the browser's credentials are dropped on
the way in, the Lab's cookies on the way out, and its HTML has the token blanked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import httpx
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from opensphere.ide.lab import Lab

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade",
})
# Host: the Lab only answers to its own loopback name. Cookie and Authorization: the
# gateway's credentials, replaced by the Lab's token. Origin and Referer: the gateway
# checked them; the Lab would compare them with its loopback Host and refuse.
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"cookie", b"authorization", b"origin", b"referer"}
# The Lab's own login cookie would be a second credential; the gateway's is the only one.
_NOT_RETURNED = HOP_BY_HOP | {b"set-cookie"}
# Close codes a WebSocket close frame may carry (1005 and 1006 only describe a closure).
_SENDABLE = frozenset({*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)})


def _keep(headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes]
          ) -> list[tuple[bytes, bytes]]:
    """Headers minus ``drop`` and minus those the Connection header names as hop-by-hop."""
    pairs = [(k.lower(), v) for k, v in headers]
    named = {t.strip().lower().encode() for k, v in pairs if k == b"connection"
             for t in v.decode("latin-1").split(",")}
    return [(k, v) for k, v in pairs if k not in drop and k not in named]


def _target(lab: Lab, scope: Scope, scheme: str) -> str:
    """The Lab URL of this request: the same raw path (the Lab serves the gateway's paths)."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return f"{scheme}://{lab.address}{path.decode('latin-1')}" + \
        (f"?{query.decode('latin-1')}" if query else "")


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def http(lab: Lab, scope: Scope, receive: Receive, send: Send) -> None:
    """Stream the request to the Lab and its answer back; HTML is read whole to blank the
    token that JupyterLab writes into its page config."""
    lab.touch()
    headers = _keep(scope["headers"], _NOT_FORWARDED)
    has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
    request = lab.client.build_request(scope["method"], _target(lab, scope, "http"),
                                       headers=headers,
                                       content=_body(receive) if has_body else None)
    try:
        upstream = await lab.client.send(request, stream=True)
    except httpx.HTTPError:
        await _plain(send, 502, b"The IDE did not answer.")
        return
    try:
        out = _keep(upstream.headers.raw, _NOT_RETURNED)
        if upstream.headers.get("content-type", "").startswith("text/html"):
            body = (await upstream.aread()).replace(lab.token.encode(), b"")
            out = [(k, v) for k, v in out if k not in (b"content-length", b"content-encoding")]
            out.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": upstream.status_code,
                        "headers": out})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": upstream.status_code,
                    "headers": out})
        async for chunk in upstream.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await upstream.aclose()


async def _plain(send: Send, status: int, text: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})


async def websocket(lab: Lab, websocket: WebSocket) -> None:
    """Connect to the Lab first (so the browser gets the subprotocol the Lab chose), then
    relay frames both ways until either side closes."""
    lab.touch()
    subprotocols = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
    try:
        upstream = await connect(
            _target(lab, websocket.scope, "ws"), subprotocols=subprotocols or None,
            additional_headers={"Authorization": f"token {lab.token}"},
            proxy=None, max_size=None, compression=None, open_timeout=10)
    except (OSError, TimeoutError, ConnectionClosed, ValueError) as err:
        await websocket.send_denial_response(
            PlainTextResponse(f"The IDE refused the connection: {err}", status_code=502))
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        relays = [asyncio.create_task(_to_lab(lab, websocket, upstream)),
                  asyncio.create_task(_to_browser(lab, websocket, upstream))]
        try:
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for relay in relays:
                relay.cancel()
            await asyncio.gather(*relays, return_exceptions=True)


async def _to_lab(lab: Lab, websocket: WebSocket, upstream: ClientConnection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(_sendable(message.get("code")))
            return
        lab.touch()
        data = message.get("bytes")
        await upstream.send(data if data is not None else message.get("text", ""))


async def _to_browser(lab: Lab, websocket: WebSocket, upstream: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for data in upstream:
            lab.touch()
            if isinstance(data, str):
                await websocket.send_text(data)
            else:
                await websocket.send_bytes(data)
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(_sendable(upstream.close_code))


def _sendable(code: int | None) -> int:
    return code if code in _SENDABLE else 1000
