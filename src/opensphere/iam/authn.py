"""Who is calling: one function for every credential kind the API accepts."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.iam import tokens
from opensphere.iam.oidc import OidcVerifier, looks_like_jwt
from opensphere.services.context import Caller
from opensphere.services.errors import ApiError, Code


async def authenticate(session: AsyncSession, authorization: str | None,
                       oidc: OidcVerifier | None) -> Caller:
    """``Bearer <token>`` (ours, or a provider's JWT when OIDC is configured) or
    ``Api-Key <key>``; anything else is UNAUTHENTICATED."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    scheme, secret = scheme.lower(), secret.strip()
    if scheme == "api-key" and secret:
        return await tokens.lookup(session, secret, tokens.API_KEY)
    if scheme == "bearer" and secret:
        if oidc is not None and looks_like_jwt(secret):
            return await oidc.authenticate(session, secret)
        return await tokens.lookup(session, secret, tokens.BEARER)
    raise ApiError(Code.UNAUTHENTICATED, "an 'Authorization: Bearer <token>' or "
                   "'Authorization: Api-Key <key>' header is required")
