"""The SQLite store's own driver: statements on the event loop, writers taking turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from opensphere.iam import audit
from opensphere.store import Database
from opensphere.store import models as m


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    yield db
    await db.close()


def _record(record_id: str) -> m.AuditRecord:
    row = audit.entry("someone", "Test", "", "OK", "")
    row.id = record_id
    return row


async def _count(store: Database) -> int:
    async with store.session() as session:
        return int(await session.scalar(select(func.count()).select_from(m.AuditRecord)) or 0)


async def test_write_transactions_of_one_process_take_turns(store: Database) -> None:
    """Each holds its transaction across an await; neither fails with 'database is
    locked', and the second starts writing only once the first committed."""
    order: list[str] = []

    async def write(name: str) -> None:
        async with store.session() as session:
            session.add(_record(name))
            await session.flush()
            order.append(f"{name} wrote")
            await asyncio.sleep(0.05)
            order.append(f"{name} commits")

    await asyncio.wait_for(asyncio.gather(write("a"), write("b")), 10)
    assert order == ["a wrote", "a commits", "b wrote", "b commits"]
    assert await _count(store) == 2


async def test_reads_go_on_while_a_write_transaction_is_open(store: Database) -> None:
    async with store.session() as writer:
        writer.add(_record("open"))
        await writer.flush()
        assert await asyncio.wait_for(_count(store), 5) == 0  # not committed yet
    assert await _count(store) == 1


async def test_a_failed_write_lets_the_next_writer_in(store: Database) -> None:
    async with store.session() as session:
        session.add(_record("twice"))
    with pytest.raises(IntegrityError):
        async with store.session() as session:
            session.add(_record("twice"))
    async with asyncio.timeout(5), store.session() as session:
        session.add(_record("after"))
    assert await _count(store) == 2
