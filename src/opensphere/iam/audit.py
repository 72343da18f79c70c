"""The audit log: every mutating call and every refused call, kept in the store."""

from __future__ import annotations

from opensphere.ids import new_id
from opensphere.store import Database
from opensphere.store import models as m


async def record(db: Database, subject_id: str, method: str, resource_id: str, result: str,
                 message: str) -> None:
    """Write one record in its own transaction, so it survives the call's rollback."""
    async with db.session() as session:
        session.add(m.AuditRecord(id=new_id("aud"), time=m.utcnow(), subject_id=subject_id,
                                  method=method, resource_id=resource_id[:100],
                                  result=result, message=message[:512]))
