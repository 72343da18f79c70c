"""The process-wide state every RPC can reach: settings and the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opensphere.iam.bootstrap import bootstrap
from opensphere.settings import Settings
from opensphere.store import Database


@dataclass
class Runtime:
    settings: Settings
    db: Database
    advertised_grpc_address: str = ""

    @classmethod
    async def start(cls, settings: Settings) -> tuple[Runtime, Path | None]:
        """Open and migrate the store, bootstrap identity; returns the new admin token path."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url)
        db.migrate()
        token_path = await bootstrap(db, settings.data_dir)
        return cls(settings=settings, db=db), token_path

    async def close(self) -> None:
        await self.db.close()
