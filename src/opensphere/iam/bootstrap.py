"""First start: an administrator of the whole installation, a default organization, and the
administrator's token file (a token without expiry: it is how the installation is reached)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import func, select

from opensphere.iam import tokens
from opensphere.iam.authorizer import SYSTEM
from opensphere.iam.roles import INSTALLATION_ADMIN_ROLE
from opensphere.ids import new_id
from opensphere.store import Database
from opensphere.store import models as m

ADMIN_NAME = "admin"
DEFAULT_ORG_NAME = "default"


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by the owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)


async def bootstrap(db: Database, data_dir: Path) -> Path | None:
    """Create the administrator and default organization when the store has no subjects.

    Returns the token file's path when one was written, else None.
    """
    async with db.session() as session:
        if await session.scalar(select(func.count()).select_from(m.Subject)):
            return None
        admin = m.Subject(id=new_id("aje"), type="userAccount", name=ADMIN_NAME)
        session.add(admin)
        session.add(m.Organization(id=new_id("bpf"), name=DEFAULT_ORG_NAME))
        await session.flush()
        session.add(m.AccessBinding(resource_type=SYSTEM.kind, resource_id=SYSTEM.id,
                                    role_id=INSTALLATION_ADMIN_ROLE, subject_type=admin.type,
                                    subject_id=admin.id))
        _, secret = await tokens.issue(session, admin.id, description="administrator")
        path = data_dir / "admin.token"
        write_secret(path, secret)
    return path
