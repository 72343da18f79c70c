"""Bearer tokens: issued once in clear text, stored as SHA-256, checked on every call."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.ids import new_id
from opensphere.services.context import Caller
from opensphere.services.errors import ApiError, Code
from opensphere.store import models as m


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue(session: AsyncSession, subject_id: str, *, description: str = "",
                ttl: timedelta | None = None) -> tuple[m.Token, str]:
    """Create a token for ``subject_id``; returns (row, secret). The secret is not kept."""
    secret = "os1_" + secrets.token_urlsafe(32)
    now = m.utcnow()
    token = m.Token(id=new_id("tok"), subject_id=subject_id, token_hash=_digest(secret),
                    description=description, created_at=now,
                    expires_at=now + ttl if ttl else None)
    session.add(token)
    return token, secret


def bearer(authorization: str | None) -> str:
    """The secret in an ``Authorization: Bearer <secret>`` header, or UNAUTHENTICATED."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(Code.UNAUTHENTICATED,
                       "an 'Authorization: Bearer <token>' header is required")
    return secret.strip()


async def authenticate(session: AsyncSession, authorization: str | None,
                       now: datetime | None = None) -> Caller:
    """Resolve the caller from the header; any problem is UNAUTHENTICATED without detail."""
    secret = bearer(authorization)
    row = (await session.execute(
        select(m.Token.expires_at, m.Token.revoked_at, m.Subject.id, m.Subject.type)
        .join(m.Subject, m.Subject.id == m.Token.subject_id)
        .where(m.Token.token_hash == _digest(secret))
    )).one_or_none()
    now = now or m.utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at <= now):
        raise ApiError(Code.UNAUTHENTICATED, "the token is not valid")
    return Caller(subject_id=row.id, subject_type=row.type)
