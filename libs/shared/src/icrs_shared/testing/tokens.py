"""Access tokens for tests: a key pair made in the test, its JWKS, tokens it signs.

A service under test is built with `jwks=issuer.jwks()` and settings naming
`issuer.issuer`; a test then calls it as any organization with any scopes.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from ..auth import JWKSCache


class TestIssuer:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, issuer: str = "http://127.0.0.1:8000", audience: str = "icrs") -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.key = RSAKey.generate_key(2048, parameters={"kid": f"test-{uuid.uuid4().hex[:8]}"})

    def jwks(self) -> JWKSCache:
        return JWKSCache.static({"keys": [self.key.as_dict(private=False)]})

    def token(
        self,
        *scopes: str,
        organization_id: str | uuid.UUID | None = None,
        client_id: str = "test-client",
        lifetime: int = 300,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + lifetime,
        }
        if organization_id is not None:
            payload["org"] = str(organization_id)
        payload.update(claims)
        header = {"alg": "RS256", "typ": "at+jwt", "kid": self.key.kid}
        return jwt.encode(header, payload, self.key)

    def headers(self, *scopes: str, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*scopes, **kwargs)}"}
