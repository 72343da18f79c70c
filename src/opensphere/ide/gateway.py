"""``/ide/<project_id>/`` on the REST port: trade a session token for a cookie, then check
every request and WebSocket (origin, cookie bound to the project) before proxying it."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from opensphere.ide import credentials, proxy
from opensphere.ide.lab import Lab, base_path
from opensphere.ide.manager import IdeManager
from opensphere.store import Database

COOKIE = "opensphere_ide"
_PATH = re.compile(r"/ide/([0-9A-Za-z_-]+)(/.*)?")  # project ids are base32hex
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NO_SESSION = "This browser has no session for this project's IDE: open the project again."
_BAD_TOKEN = ("This IDE link was already used, has expired or belongs to another project: "
              "open the project again.")


def _text(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status, headers={"Cache-Control": "no-store"})


class Gateway:
    """The ASGI app mounted at ``/ide``."""

    def __init__(self, manager: IdeManager, db: Database) -> None:
        self.manager = manager
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"])
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            if match is None or match.group(2) is None:
                await websocket.send_denial_response(_text(404, "Not found."))
                return
            admitted = await self._admit(websocket, match.group(1))
            if isinstance(admitted, Lab):
                await proxy.websocket(admitted, websocket)
            else:
                await websocket.send_denial_response(admitted)
        elif scope["type"] == "http":
            await self._http(scope, receive, send, match)

    async def _http(self, scope: Scope, receive: Receive, send: Send,
                    match: re.Match[str] | None) -> None:
        request = Request(scope, receive)
        if match is None:
            response = _text(404, "Not found.")
        elif match.group(2) is None:
            query = f"?{request.url.query}" if request.url.query else ""
            response = RedirectResponse(base_path(match.group(1)) + query, status_code=308)
        elif match.group(2) == "/" and (request.method == "POST"
                                        or "sessionToken" in request.query_params):
            response = await self._enter(request, match.group(1))
        else:
            admitted = await self._admit(request, match.group(1))
            if isinstance(admitted, Lab):
                await proxy.http(admitted, scope, receive, send)
                return
            response = admitted
        await response(scope, receive, send)

    async def _enter(self, request: Request, project_id: str) -> Response:
        """The project URL of ``ProjectService.Open``: a single-use session token (query or
        body ``sessionToken``) becomes the cookie, then on to the Lab.

        No origin check here: the unguessable token is the proof of intent, and the project
        URL is meant to be followed from other sites.
        """
        if request.method == "POST":
            token = await _posted_token(request)
        else:
            token = request.query_params.get("sessionToken")
        secret = None
        if token:
            async with self.db.session() as session:
                secret = await credentials.redeem_entry(session, token, project_id)
        if secret is None:
            return _text(401, _BAD_TOKEN)
        response = RedirectResponse(base_path(project_id) + "lab", status_code=303,
                                    headers={"Cache-Control": "no-store"})
        # Lax, not Strict: the redirect that follows a link from another site must carry it.
        response.set_cookie(COOKIE, secret, path=base_path(project_id), httponly=True,
                            samesite="lax", secure=self.manager.secure)
        return response

    async def _admit(self, conn: HTTPConnection, project_id: str) -> Lab | Response:
        """The project's Lab if the request may reach it, else the refusal to send."""
        changes_state = conn.scope["type"] == "websocket" or conn.scope["method"] not in \
            _SAFE_METHODS
        if changes_state and not self._same_origin(conn):
            return _text(403, "Requests to the IDE from other sites are refused.")
        secret = conn.cookies.get(COOKIE)
        if not secret:
            return _text(401, _NO_SESSION)
        async with self.db.session() as session:
            subject_id = await credentials.check_cookie(session, secret, project_id)
        if subject_id is None:
            return _text(401, _NO_SESSION)
        lab = self.manager.running(project_id)
        if lab is None:
            return _text(503, "The IDE of this project is not running: open the project again.")
        return lab

    def _same_origin(self, conn: HTTPConnection) -> bool:
        """No Origin header (not a browser's cross-site request), or the gateway's own: the
        host the browser addressed, or the advertised public URL."""
        origin = conn.headers.get("origin")
        if origin is None:
            return True
        scheme = "https" if conn.scope["scheme"] in ("https", "wss") else "http"
        public = urlsplit(self.manager.public_url)
        own = {f"{scheme}://{conn.headers.get('host', '')}", f"{public.scheme}://{public.netloc}"}
        return origin.lower() in {o.lower() for o in own}


async def _posted_token(request: Request) -> str | None:
    """``sessionToken`` from a JSON or URL-encoded form body."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        token = data.get("sessionToken") if isinstance(data, dict) else None
        return token if isinstance(token, str) else None
    return parse_qs(raw.decode("latin-1")).get("sessionToken", [None])[0]
