"""Bearer JWTs from an external OpenID Connect provider, mapped to ``federatedUser`` subjects.

The provider's signing keys come from a JWKS file; issuer and audience are configured.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jwt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from opensphere.services.context import Caller
from opensphere.services.errors import ApiError, Code
from opensphere.store import models as m

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
FEDERATED = "federatedUser"


def looks_like_jwt(secret: str) -> bool:
    return secret.count(".") == 2


class OidcVerifier:
    def __init__(self, jwks_file: Path, issuer: str, audience: str) -> None:
        self.keys = jwt.PyJWKSet.from_dict(json.loads(jwks_file.read_text()))
        self.issuer = issuer
        self.audience = audience

    def claims(self, token: str) -> dict[str, object]:
        """Verified claims; any problem (signature, expiry, issuer, audience) is
        UNAUTHENTICATED without saying which, so the check cannot be probed."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            candidates = [k for k in self.keys.keys if kid is None or k.key_id == kid]
            for key in candidates:
                try:
                    return jwt.decode(token, key=key.key, algorithms=ALGORITHMS,
                                      audience=self.audience, issuer=self.issuer,
                                      options={"require": ["exp", "iss", "aud", "sub"]})
                except jwt.InvalidSignatureError:
                    continue
        except jwt.PyJWTError:
            pass
        raise ApiError(Code.UNAUTHENTICATED, "the credentials are not valid")

    async def authenticate(self, session: AsyncSession, token: str) -> Caller:
        claims = self.claims(token)
        name = f"{claims['sub']}@{claims['iss']}"
        subject_id = "fed" + hashlib.sha256(name.encode()).hexdigest()[:17]
        if await session.get(m.Subject, subject_id) is None:
            try:
                async with session.begin_nested():
                    session.add(m.Subject(id=subject_id, type=FEDERATED, name=name[:100]))
            except IntegrityError:
                pass  # another replica created it first
        return Caller(subject_id=subject_id, subject_type=FEDERATED)
