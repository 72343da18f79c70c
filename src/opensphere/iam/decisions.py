"""Access decisions remembered until something they depend on changes.

Authenticating a credential and working out what a caller may do on a resource take
three queries, and their answers change only when a binding, a credential, a subject, a
group's members or a resource's place in the hierarchy does. Triggers count every such
change in ``iam_state.version`` (migration 0006), whoever makes it. Each call reads that
one number and reuses only answers worked out at the same version, so a revoked token or
a removed binding is refused on the very next call, on every server sharing the store.
Unknown credentials and missing resources are never remembered.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam import authn, authorizer, tokens
from opensphere.iam.oidc import OidcVerifier
from opensphere.services.context import Caller
from opensphere.store import models as m

LIMIT = 50_000  # remembered answers of each kind, at most
_VERSION = select(m.IamState.version).where(m.IamState.id == 1)

K = TypeVar("K")
V = TypeVar("V")


class _Memo(Generic[K, V]):
    """Answers, each with the version it was worked out at."""

    def __init__(self) -> None:
        self._entries: dict[K, tuple[int, V]] = {}

    def get(self, key: K, version: int) -> V | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] == version else None

    def put(self, key: K, version: int, value: V) -> None:
        if len(self._entries) >= LIMIT:
            self._entries.clear()
        self._entries[key] = (version, value)

    def clear(self) -> None:
        self._entries.clear()


class Decisions:
    """One per process; ``view`` for each call."""

    def __init__(self) -> None:
        self._newest = -1
        # (credential kind, digest) -> who holds it; (subject, kind, id) -> permissions
        self.holders: _Memo[tuple[str, str], tokens.Holder] = _Memo()
        self.grants: _Memo[tuple[str, str, str], frozenset[str]] = _Memo()

    async def view(self, session: AsyncSession) -> AccessView:
        """Decisions as of the store's current version (read in ``session``)."""
        # A plain statement on the session's connection: no ORM work, on every call.
        version = int(await (await session.connection()).scalar(_VERSION) or 0)
        if version > self._newest:  # everything remembered is out of date
            self._newest = version
            self.holders.clear()
            self.grants.clear()
        return AccessView(self, session, version)


class AccessView:
    """The access decisions of one call."""

    def __init__(self, decisions: Decisions, session: AsyncSession, version: int) -> None:
        self._decisions, self._session, self._version = decisions, session, version

    async def authenticate(self, authorization: str | None, oidc: OidcVerifier | None) -> Caller:
        return await authn.authenticate(self._session, authorization, oidc, self._holder)

    async def authorize(self, caller: Caller, permission: str, kind: str,
                        resource_id: str) -> None:
        """Return if ``caller`` holds ``permission`` on the resource, raise otherwise."""
        key = (caller.subject_id, kind, resource_id)
        granted = self._decisions.grants.get(key, self._version)
        if granted is None:
            granted = await authorizer.grants(self._session, caller, kind, resource_id)
            if granted is not None:
                self._decisions.grants.put(key, self._version, granted)
        authorizer.decide(granted, permission, kind, resource_id)

    async def _holder(self, token_digest: str, kind: str) -> tokens.Holder | None:
        key = (kind, token_digest)
        found = self._decisions.holders.get(key, self._version)
        if found is None:
            found = await tokens.holder(self._session, token_digest, kind)
            if found is not None:
                self._decisions.holders.put(key, self._version, found)
        return found
