"""One process serving gRPC and REST on the same ``Api``, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from opensphere.ide.gateway import Gateway
from opensphere.runtime import Runtime
from opensphere.services import execution, ide
from opensphere.services.api import Api
from opensphere.settings import Settings
from opensphere.transport import grpc_server, rest

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the process owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # protocol says TCP, and without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Addresses:
    grpc: str
    rest: str
    admin_token_path: Path | None


class Server:
    """Owns the runtime, the gRPC server and the REST server of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self._grpc = None
        self._rest: _Uvicorn | None = None
        self._rest_task: asyncio.Task[None] | None = None

    async def start(self) -> Addresses:
        s = self.settings
        self.runtime, token_path = await Runtime.start(s)
        api = Api(self.runtime)
        # The REST port is bound first: IDE URLs name it, and Open may be called over gRPC
        # as soon as that starts.
        sock = _bind(s.host, s.rest_port)
        scheme = "https" if s.tls else "http"
        rest_url = f"{scheme}://{_hostport(s.host, sock.getsockname()[1])}"
        ides = await ide.start(self.runtime, rest_url)
        await execution.start(self.runtime)

        cert = s.tls_cert.read_bytes() if s.tls_cert else None
        key = s.tls_key.read_bytes() if s.tls_key else None
        self._grpc = grpc_server.build_server(api)
        grpc_port = grpc_server.add_port(self._grpc, _hostport(s.host, s.grpc_port), cert, key)
        self.runtime.advertised_grpc_address = _hostport(s.host, grpc_port)
        await self._grpc.start()

        config = uvicorn.Config(
            rest.build_app(api, Gateway(ides, self.runtime.db)), log_level="warning",
            access_log=False, lifespan="off",
            ssl_certfile=str(s.tls_cert) if s.tls else None,
            ssl_keyfile=str(s.tls_key) if s.tls else None,
        )
        self._rest = _Uvicorn(config)
        self._rest_task = asyncio.create_task(self._rest.serve(sockets=[sock]))
        while not self._rest.started:
            if self._rest_task.done():
                self._rest_task.result()
            await asyncio.sleep(0.01)
        return Addresses(grpc=self.runtime.advertised_grpc_address, rest=rest_url,
                         admin_token_path=token_path)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting calls, let running ones finish for up to ``grace`` seconds."""
        if self._rest is not None and self._rest_task is not None:
            self._rest.should_exit = True
            await self._rest_task
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self.runtime is not None:
            await self.runtime.close()
