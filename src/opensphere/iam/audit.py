"""The audit log: every mutating call and every refused call, kept in the store."""

from __future__ import annotations

from dataclasses import dataclass

from opensphere.ids import new_id
from opensphere.store import Database
from opensphere.store import models as m


def entry(subject_id: str, method: str, resource_id: str, result: str,
          message: str) -> m.AuditRecord:
    return m.AuditRecord(id=new_id("aud"), time=m.utcnow(), subject_id=subject_id,
                         method=method, resource_id=resource_id[:100], result=result,
                         message=message[:512])


async def record(db: Database, subject_id: str, method: str, resource_id: str, result: str,
                 message: str) -> None:
    """Write one record in its own transaction, so it survives the call's rollback."""
    async with db.session() as session:
        session.add(entry(subject_id, method, resource_id, result, message))


@dataclass
class Pending:
    """The success record of a call that changes state. A handler writes it in the
    transaction of the change itself (``take``), which then costs no transaction of its
    own; otherwise the API layer writes it once the handler returned."""

    subject_id: str
    method: str
    resource_id: str
    written: bool = False

    def take(self) -> m.AuditRecord:
        """The record, for the caller to write in its transaction (the API layer won't)."""
        self.written = True
        return entry(self.subject_id, self.method, self.resource_id, "OK", "")
