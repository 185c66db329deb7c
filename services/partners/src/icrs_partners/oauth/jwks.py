"""The partners service checking tokens of its own issuer: the keys come from its key
store (its own database), not over HTTP from itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from icrs_shared.auth import JWKSCache

from ..settings import PartnersSettings

if TYPE_CHECKING:
    from .keystore import KeyStore


class OwnIssuerKeys(JWKSCache):
    """A key cache over this service's published keys; usable once `attach`ed to the key
    store (the start hook does it). The store keeps its own short cache, so this one may
    ask it often."""

    def __init__(self) -> None:
        super().__init__(provider=self._published, max_age=10.0, min_refresh_interval=1.0)
        self._store: KeyStore | None = None

    def attach(self, store: KeyStore) -> None:
        self._store = store

    async def _published(self) -> dict[str, Any]:
        if self._store is None:
            raise RuntimeError("the key store has not started")
        return await self._store.jwks()


def own_issuer_jwks(settings: PartnersSettings) -> JWKSCache | None:
    """`OwnIssuerKeys` when tokens are this service's own (no other issuer or key set is
    configured); None leaves the choice to the runtime (the configured JWKS URL)."""
    if settings.auth_issuer or settings.auth_jwks_url:
        return None
    return OwnIssuerKeys()
