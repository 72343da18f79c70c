"""Session tokens and gateway cookies, stored as SHA-256 so any API replica can check them."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.store import models as m

ENTRY_TTL = timedelta(minutes=2)
COOKIE_TTL = timedelta(hours=12)
# A cookie's expiry is pushed forward at most this often, not on every proxied request.
COOKIE_REFRESH = timedelta(minutes=5)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _add(session: AsyncSession, kind: str, subject_id: str, project_id: str,
         ttl: timedelta) -> str:
    secret = secrets.token_urlsafe(32)
    now = m.utcnow()
    session.add(m.IdeCredential(token_hash=_digest(secret), kind=kind, subject_id=subject_id,
                                project_id=project_id, created_at=now, expires_at=now + ttl))
    return secret


def issue_entry(session: AsyncSession, subject_id: str, project_id: str) -> str:
    """A short-lived, single-use session token for ``subject_id`` on ``project_id``."""
    return _add(session, "entry", subject_id, project_id, ENTRY_TTL)


async def redeem_entry(session: AsyncSession, token: str, project_id: str) -> str | None:
    """Consume a session token for ``project_id``; the new cookie's secret, or None.

    One DELETE ... RETURNING: of two concurrent uses of a token only one gets a row.
    """
    subject_id = await session.scalar(
        delete(m.IdeCredential)
        .where(m.IdeCredential.token_hash == _digest(token), m.IdeCredential.kind == "entry",
               m.IdeCredential.project_id == project_id,
               m.IdeCredential.expires_at > m.utcnow())
        .returning(m.IdeCredential.subject_id))
    if subject_id is None:
        return None
    return _add(session, "cookie", subject_id, project_id, COOKIE_TTL)


async def check_cookie(session: AsyncSession, secret: str, project_id: str) -> str | None:
    """The subject a cookie was issued to, if it is live and for ``project_id``; else None.

    The project is checked here, not left to the cookie's path: a browser sends any cookie
    a page sets for itself, and a client other than a browser sends whatever it likes.
    """
    row = await session.get(m.IdeCredential, _digest(secret))
    now = m.utcnow()
    if row is None or row.kind != "cookie" or row.project_id != project_id \
            or row.expires_at <= now:
        return None
    if row.expires_at < now + COOKIE_TTL - COOKIE_REFRESH:
        row.expires_at = now + COOKIE_TTL
    return row.subject_id


async def purge_expired(session: AsyncSession) -> None:
    await session.execute(delete(m.IdeCredential).where(m.IdeCredential.expires_at <= m.utcnow()))
