"""What the authorization server holds while the service runs, and how it starts."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from icrs_shared.runtime import Runtime

from ..credentials import hash_secret
from ..settings import PartnersSettings
from .jwks import OwnIssuerKeys
from .kek import KeyEncryptionError, load_kek
from .keystore import KeyStore
from .ratelimit import RateLimiter
from .server import TokenSettings

log = logging.getLogger(__name__)

_EXTRA = "authorization_server"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a secret
JWKS_PATH = "/.well-known/jwks.json"


@dataclass
class AuthorizationServerState:
    issuer: str
    keys: KeyStore
    client_limiter: RateLimiter
    failure_limiter: RateLimiter
    #: Checked when no client's hash is, so that an unknown client costs the same time.
    stand_in_hash: str
    token_settings: TokenSettings

    @property
    def token_endpoint(self) -> str:
        return self.issuer + TOKEN_PATH

    @property
    def jwks_uri(self) -> str:
        return self.issuer + JWKS_PATH


def authorization_server(runtime: Runtime) -> AuthorizationServerState:
    state = runtime.extras.get(_EXTRA)
    if not isinstance(state, AuthorizationServerState):
        raise RuntimeError("the authorization server has not started")
    return state


async def start_authorization_server(runtime: Runtime) -> None:
    """On start: the key-encryption key, the first signing key (or a due rotation), the
    rate limits; and this service's own token validation reads its keys from here."""
    settings = runtime.settings
    if not isinstance(settings, PartnersSettings):
        raise TypeError("the partners service runs with PartnersSettings")
    try:
        keys = KeyStore(
            runtime.db,
            kek=load_kek(settings),
            rotate_after=timedelta(days=settings.signing_key_rotation_days),
            leeway=settings.auth_leeway,
        )
        await keys.refresh()
    except KeyEncryptionError as exc:
        # Logged here with its reason: log records carry no exception messages.
        log.error("token-signing keys unusable", extra={"reason": str(exc)})
        raise
    state = AuthorizationServerState(
        issuer=settings.issuer,
        keys=keys,
        client_limiter=RateLimiter(
            rate=settings.token_rate_per_minute / 60, burst=settings.token_burst
        ),
        failure_limiter=RateLimiter(
            rate=settings.token_failure_rate_per_minute / 60, burst=settings.token_failure_burst
        ),
        stand_in_hash=await asyncio.to_thread(hash_secret, secrets.token_urlsafe(32)),
        token_settings=TokenSettings(
            issuer=settings.issuer,
            audience=settings.auth_audience,
            lifetime=settings.token_lifetime,
        ),
    )
    runtime.extras[_EXTRA] = state
    if isinstance(runtime.tokens.jwks, OwnIssuerKeys):
        runtime.tokens.jwks.attach(keys)
