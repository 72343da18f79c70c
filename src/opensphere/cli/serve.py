"""``opensphere serve``: run the server until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from opensphere.settings import Settings

console = Console()


async def _run(settings: Settings) -> None:
    from opensphere.server import Server  # heavy: imported only when serving, not by clients

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = Server(settings)
    addresses = await server.start()
    # What exists now (modules, the schema, the contract) lives as long as the process:
    # kept out of the collector, full collections walk only what calls create, and do not
    # stall a call for tens of milliseconds.
    gc.collect()
    gc.freeze()
    if addresses.admin_token_path is not None:
        console.print(f"Created the administrator; its token is in [bold]"
                      f"{addresses.admin_token_path}[/bold] (mode 0600)")
    console.print(f"OpenSphere gRPC on [bold]{addresses.grpc}[/bold], "
                  f"REST on [bold]{addresses.rest}[/bold]; data in {settings.data_dir}")
    await stop.wait()
    console.print("Stopping...")
    await server.stop()
    console.print("Stopped.")


def serve(
    data_dir: Annotated[Path | None, typer.Option(
        help="Data folder [env: OPENSPHERE_DATA_DIR, default ~/.opensphere]")] = None,
    host: Annotated[str | None, typer.Option(
        help="Address to listen on [default 127.0.0.1]")] = None,
    grpc_port: Annotated[int | None, typer.Option(
        help="gRPC port [default 50051; 0 picks a free one]")] = None,
    rest_port: Annotated[int | None, typer.Option(
        help="REST port [default 8080; 0 picks a free one]")] = None,
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL; default a SQLite file in the data folder")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="PEM certificate: serve TLS (with --tls-key)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert")] = None,
) -> None:
    """Start the API server (gRPC and REST) and run until interrupted."""
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    settings = Settings.from_env(data_dir=data_dir, host=host, grpc_port=grpc_port,
                                 rest_port=rest_port, database_url=database_url,
                                 tls_cert=tls_cert, tls_key=tls_key)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(settings))
