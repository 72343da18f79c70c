"""Persistence: SQLAlchemy models, Alembic migrations and the async database handle."""

from opensphere.store.db import Database

__all__ = ["Database"]
