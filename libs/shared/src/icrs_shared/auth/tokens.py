"""Validation of JWT access tokens (RFC 9068) against the issuer's key set."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64decode

from icrs_shared.auth.caller import Caller
from icrs_shared.auth.errors import InvalidToken
from icrs_shared.auth.jwks import JWKSCache, JWKSUnavailable
from icrs_shared.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# No access token needs more; the bound keeps a hostile header from costing parse time.
MAX_TOKEN_LENGTH = 16_384
# Critical extensions and RFC 7797 unencoded payloads have no place in an access token: a
# header asking for them is refused rather than half understood.
REFUSED_HEADERS = frozenset({"crit", "b64"})


def accepted_algorithms(configured: Iterable[str]) -> frozenset[str]:
    """The configured algorithms without `none` and HMAC, whatever the configuration says.

    A resource server holds only public keys: `none` needs no key at all, and HMAC would
    verify with a public key used as the shared secret (the key-confusion attack).
    """
    accepted: set[str] = set()
    for name in configured:
        if name.lower() == "none" or name.upper().startswith("HS"):
            log.warning("signing algorithm ignored", extra={"algorithm": name})
        elif name not in JWSRegistry.algorithms:
            raise ValueError(f"unknown signing algorithm: {name!r}")
        else:
            accepted.add(name)
    if not accepted:
        raise ValueError("no acceptable signing algorithm configured")
    return frozenset(accepted)


class TokenValidator:
    """Turns a bearer token into a `Caller`, or raises `InvalidToken` (a 401).

    The signature is verified before any claim is read, so nothing an attacker wrote into
    an unsigned payload steers the outcome or the error message.
    """

    def __init__(
        self,
        *,
        jwks: JWKSCache,
        issuer: str,
        audience: str,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        org_claim: str = "org",
        leeway: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.org_claim = org_claim
        self.leeway = leeway
        self._clock = clock
        self._algorithms = {
            name: JWSRegistry.algorithms[name] for name in accepted_algorithms(algorithms)
        }

    @classmethod
    def from_settings(cls, settings: Settings, *, jwks: JWKSCache | None = None) -> Self:
        """A validator for the configured issuer; it owns `jwks` (closed by `aclose`)."""
        return cls(
            jwks=JWKSCache(settings.jwks_url) if jwks is None else jwks,
            issuer=settings.issuer,
            audience=settings.auth_audience,
            algorithms=settings.auth_algorithms,
            org_claim=settings.auth_org_claim,
            leeway=settings.auth_leeway,
        )

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset(self._algorithms)

    async def aclose(self) -> None:
        await self.jwks.aclose()

    async def validate(self, token: str) -> Caller:
        try:
            return await self._validate(token)
        except InvalidToken as exc:
            log.info("access token refused", extra={"reason": exc.detail})
            raise

    async def _validate(self, token: str) -> Caller:
        header, signing_input, payload, signature = _split(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken("token algorithm not accepted")
        if REFUSED_HEADERS & header.keys():
            raise InvalidToken("token header not accepted")
        key = await self._key(header.get("kid"))
        self._verify(alg, key, signing_input, signature)
        claims = _claims(payload)
        self._check_claims(claims)
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("token type not accepted")
        return self._caller(claims)

    async def _key(self, kid: object) -> Key:
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token key id missing")
        try:
            key = await self.jwks.get(kid)
        except JWKSUnavailable:
            log.warning("token not verifiable: signing keys unavailable")
            raise InvalidToken("token signing keys unavailable") from None
        if key is None:
            raise InvalidToken("token signing key unknown")
        return key

    def _verify(self, alg: str, key: Key, signing_input: bytes, signature: bytes) -> None:
        model = self._algorithms[alg]
        try:
            # Refuses a key of another type or curve, or one published for another alg.
            model.check_key(key)
        except JoseError:
            raise InvalidToken("token signing key does not match algorithm") from None
        try:
            valid = model.verify(signing_input, urlsafe_b64decode(signature), key)
        except (JoseError, ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidToken("token signature invalid")

    def _check_claims(self, claims: dict[str, Any]) -> None:
        if claims.get("iss") != self.issuer:
            raise InvalidToken("token issuer not accepted")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise InvalidToken("token audience not accepted")
        now = self._clock()
        if now >= _required_timestamp(claims, "exp") + self.leeway:
            raise InvalidToken("token expired")
        if _required_timestamp(claims, "iat") > now + self.leeway:
            raise InvalidToken("token issued in the future")
        nbf = _timestamp(claims, "nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise InvalidToken("token not yet valid")

    def _caller(self, claims: dict[str, Any]) -> Caller:
        return Caller(
            client_id=_text(claims, "client_id", "token client missing"),
            organization_id=_optional_text(claims, self.org_claim, "token organization invalid"),
            scopes=_scopes(claims),
            subject=_text(claims, "sub", "token subject missing"),
            token_id=_optional_text(claims, "jti", "token id invalid"),
        )


def _split(token: object) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """Header, signing input, payload and signature segments of a compact JWS."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise InvalidToken("token malformed")
    parts = token.encode("ascii").split(b".")
    if len(parts) != 3:
        raise InvalidToken("token malformed")
    header_segment, payload_segment, signature = parts
    header = _json_segment(header_segment)
    if header is None:
        raise InvalidToken("token malformed")
    return header, header_segment + b"." + payload_segment, payload_segment, signature


def _claims(payload_segment: bytes) -> dict[str, Any]:
    claims = _json_segment(payload_segment)
    if claims is None:
        raise InvalidToken("token payload invalid")
    return claims


def _json_segment(segment: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(urlsafe_b64decode(segment))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _timestamp(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int to Python, not a NumericDate to RFC 7519.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(f"token {name} claim invalid")
    return float(value)


def _required_timestamp(claims: dict[str, Any], name: str) -> float:
    value = _timestamp(claims, name)
    if value is None:
        raise InvalidToken(f"token {name} claim missing")
    return value


def _text(claims: dict[str, Any], name: str, error: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(error)
    return value


def _optional_text(claims: dict[str, Any], name: str, error: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidToken(error)
    return value


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    # RFC 9068 uses a space-separated `scope`; some issuers (Entra ID) send `scp`, as a
    # string or a list.
    raw = claims["scope"] if "scope" in claims else claims.get("scp")
    if raw is None:
        return frozenset()
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return frozenset(raw)
    raise InvalidToken("token scope invalid")
