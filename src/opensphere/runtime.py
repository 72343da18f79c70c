"""The process-wide state every RPC can reach: settings and the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from opensphere.iam.bootstrap import bootstrap
from opensphere.iam.oidc import OidcVerifier
from opensphere.settings import Settings
from opensphere.store import Database


@dataclass
class Runtime:
    settings: Settings
    db: Database
    oidc: OidcVerifier | None = None
    advertised_grpc_address: str = ""
    # Shutdown hooks of components that own processes (kernels, IDEs), run newest first.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> tuple[Runtime, Path | None]:
        """Open and migrate the store, bootstrap identity; returns the new admin token path."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url)
        db.migrate()
        token_path = await bootstrap(db, settings.data_dir)
        oidc = None
        if settings.oidc:
            assert settings.oidc_jwks_file is not None
            oidc = OidcVerifier(settings.oidc_jwks_file, settings.oidc_issuer,
                                settings.oidc_audience)
        return cls(settings=settings, db=db, oidc=oidc), token_path

    def project_dir(self, project_id: str) -> Path:
        """The project's storage folder (created on first use); notebooks live here."""
        path = self.settings.data_dir / "projects" / project_id
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    async def close(self) -> None:
        for closer in reversed(self.closers):
            await closer()
        await self.db.close()
