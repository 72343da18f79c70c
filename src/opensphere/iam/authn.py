"""Who is calling: one function for every credential kind the API accepts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam import tokens
from opensphere.iam.oidc import OidcVerifier, looks_like_jwt
from opensphere.services.context import Caller
from opensphere.services.errors import ApiError, Code

# (credential digest, kind) -> who holds it, None for an unknown or revoked credential
HolderLookup = Callable[[str, str], Awaitable[tokens.Holder | None]]


async def authenticate(session: AsyncSession, authorization: str | None,
                       oidc: OidcVerifier | None, holder: HolderLookup) -> Caller:
    """``Bearer <token>`` (ours, or a provider's JWT when OIDC is configured) or
    ``Api-Key <key>``; anything else is UNAUTHENTICATED. ``holder`` finds who one of our
    credentials belongs to."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    scheme, secret = scheme.lower(), secret.strip()
    if scheme == "api-key" and secret:
        return tokens.check_live(await holder(tokens.digest(secret), tokens.API_KEY))
    if scheme == "bearer" and secret:
        if oidc is not None and looks_like_jwt(secret):
            return await oidc.authenticate(session, secret)
        return tokens.check_live(await holder(tokens.digest(secret), tokens.BEARER))
    raise ApiError(Code.UNAUTHENTICATED, "an 'Authorization: Bearer <token>' or "
                   "'Authorization: Api-Key <key>' header is required")
