"""Bearer tokens and API keys: issued once in clear text, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.ids import new_id
from opensphere.services.context import Caller
from opensphere.services.errors import ApiError, Code
from opensphere.store import models as m

DEFAULT_TTL = timedelta(hours=12)
BEARER, API_KEY = "bearer", "api_key"
_PREFIX = {BEARER: "os1_", API_KEY: "osk_"}


@dataclass(frozen=True)
class Holder:
    caller: Caller
    expires_at: datetime | None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue(session: AsyncSession, subject_id: str, *, kind: str = BEARER,
                description: str = "", ttl: timedelta | None = None) -> tuple[m.Token, str]:
    """Create a credential for ``subject_id``; returns (row, secret). The secret is not kept.

    ``ttl=None`` means no expiry (API keys, the administrator's first token).
    """
    secret = _PREFIX[kind] + secrets.token_urlsafe(32)
    now = m.utcnow()
    token = m.Token(id=new_id("tok"), subject_id=subject_id, kind=kind,
                    token_hash=digest(secret), description=description, created_at=now,
                    expires_at=now + ttl if ttl else None)
    session.add(token)
    return token, secret


async def holder(session: AsyncSession, token_digest: str, kind: str) -> Holder | None:
    """Who a credential of ``kind`` belongs to and until when; None when it is unknown or
    revoked."""
    row = (await session.execute(
        select(m.Token.expires_at, m.Token.revoked_at, m.Subject.id, m.Subject.type)
        .join(m.Subject, m.Subject.id == m.Token.subject_id)
        .where(m.Token.token_hash == token_digest, m.Token.kind == kind)
    )).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return Holder(Caller(subject_id=row.id, subject_type=row.type), row.expires_at)


def check_live(found: Holder | None) -> Caller:
    """The holder's identity while the credential lasts; UNAUTHENTICATED otherwise."""
    if found is None or (found.expires_at and found.expires_at <= m.utcnow()):
        raise ApiError(Code.UNAUTHENTICATED, "the credentials are not valid")
    return found.caller
