"""``opensphere serve``: run the server until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import typer
from rich.console import Console

from opensphere.server import Server
from opensphere.settings import Settings

console = Console()


async def _run(settings: Settings) -> None:
    server = Server(settings)
    addresses = await server.start()
    if addresses.admin_token_path is not None:
        console.print(f"Created the administrator; its token is in [bold]"
                      f"{addresses.admin_token_path}[/bold] (mode 0600)")
    console.print(f"OpenSphere gRPC on [bold]{addresses.grpc}[/bold], "
                  f"REST on [bold]{addresses.rest}[/bold]; data in {settings.data_dir}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    console.print("Stopping...")
    await server.stop()
    console.print("Stopped.")


def serve(
    data_dir: Path = typer.Option(None, help="Data folder [env: OPENSPHERE_DATA_DIR, "
                                  "default ~/.opensphere]"),
    host: str = typer.Option(None, help="Address to listen on [default 127.0.0.1]"),
    grpc_port: int = typer.Option(None, help="gRPC port [default 50051; 0 picks a free one]"),
    rest_port: int = typer.Option(None, help="REST port [default 8080; 0 picks a free one]"),
    database_url: str = typer.Option(None, help="SQLAlchemy URL; default a SQLite file in "
                                     "the data folder"),
    tls_cert: Path = typer.Option(None, help="PEM certificate: serve TLS (with --tls-key)"),
    tls_key: Path = typer.Option(None, help="PEM private key for --tls-cert"),
) -> None:
    """Start the API server (gRPC and REST) and run until interrupted."""
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    settings = Settings.from_env(data_dir=data_dir, host=host, grpc_port=grpc_port,
                                 rest_port=rest_port, database_url=database_url,
                                 tls_cert=tls_cert, tls_key=tls_key)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(settings))
