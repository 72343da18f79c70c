"""A real OpenSphere server on loopback, run in a thread with its own event loop.

Tests stay synchronous, so blocking clients (the SDK subprocess, grpcurl, httpx) never
stall the server they talk to.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

from opensphere.client import Client, Connection
from opensphere.server import Addresses, Server
from opensphere.settings import Settings


@dataclass
class RunningServer:
    settings: Settings
    addresses: Addresses
    token: str
    organization_id: str

    @property
    def grpc(self) -> str:
        return self.addresses.grpc

    @property
    def rest(self) -> str:
        return self.addresses.rest

    def client(self, token: str | None = None) -> Client:
        return Client(Connection(address=self.grpc, token=token or self.token,
                                 ca_file=self.settings.tls_cert))


class ServerThread:
    """Start with ``start()``, stop with ``stop()``; the server lives in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = Server(settings)

    def start(self) -> RunningServer:
        self._thread.start()
        addresses = asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(60)
        token = (self.settings.data_dir / "admin.token").read_text().strip()
        running = RunningServer(self.settings, addresses, token, "")
        orgs = running.client().call("OrganizationService.List")
        running.organization_id = orgs.organizations[0].id  # type: ignore[attr-defined]
        return running

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(grace=1), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def settings_for(data_dir: Path, database_url: str, **extra: object) -> Settings:
    """Loopback ports picked by the OS; no pre-started kernels unless a test asks for them."""
    extra.setdefault("kernel_pool_size", 0)
    return Settings.from_env(data_dir=data_dir, database_url=database_url, grpc_port=0,
                             rest_port=0, **extra)
