"""New rows written as plain INSERT statements, outside the ORM's unit of work.

Flushing rows added to a session costs several times the INSERTs themselves. Where a
call waits on its writes (a run's outcome is on Execute's critical path), rows are
written this way instead. They are not attached to the session: later queries in the
same transaction still see them, through the store.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Insert, Table
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.store.models import Base


@cache
def _statement(table: Table) -> Insert:
    return table.insert()


async def insert(session: AsyncSession, *rows: Base) -> None:
    """INSERT each new (never added) row in ``session``'s transaction; attributes left
    unset (None) take their column's default."""
    connection = await session.connection()
    for row in rows:
        table = row.__table__
        values = {column.key: value for column in table.columns
                  if (value := getattr(row, column.key)) is not None}
        await connection.execute(_statement(table), values)
