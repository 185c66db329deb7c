"""The issuer's signing keys (its JWKS), fetched without blocking and cached by `kid`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import DictKey, JWKRegistry, Key

log = logging.getLogger(__name__)

KeySetProvider = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]


class JWKSUnavailable(Exception):
    """The key set could not be fetched or holds no usable key; no token can be verified."""


class JWKSCache:
    """Signing keys by `kid`, from a JWKS URL or from a provider callable.

    A `kid` not in the cache triggers one refetch (that is how a key rotation is seen), and
    keys older than `max_age` are refetched; but fetches start at most once per
    `min_refresh_interval` seconds, so tokens with made-up kids cannot make this hammer the
    issuer, and concurrent refetches share one request.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        provider: KeySetProvider | None = None,
        max_age: float = 300.0,
        min_refresh_interval: float = 10.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (url is None) == (provider is None):
            raise ValueError("give exactly one of url or provider")
        self.url = url
        self._provider = provider
        self._owns_client = client is None and url is not None
        if self._owns_client:
            client = httpx.AsyncClient(timeout=timeout)
        self._client = client
        self.max_age = max_age
        self._interval = min_refresh_interval
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._attempts = 0  # finished fetches, successful or not
        self._error: str | None = None

    @classmethod
    def static(cls, jwks: Mapping[str, Any], **kwargs: Any) -> JWKSCache:
        """A cache over a key set held in memory (tests, the one-process mode).

        The mapping is read again on each refresh, so changing it in place simulates rotation.
        """
        return cls(provider=lambda: jwks, **kwargs)

    async def get(self, kid: str) -> Key | None:
        """The key with this `kid`, or None when the issuer does not publish it.

        Raises `JWKSUnavailable` when the keys cannot be had at all.
        """
        if kid not in self._keys or self._expired():
            await self._refresh(kid)
        return self._keys.get(kid)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    def _expired(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self.max_age

    async def _refresh(self, kid: str) -> None:
        seen = self._attempts
        async with self._lock:
            # A fetch that ended while this task waited is as fresh as one it would start.
            if self._attempts == seen and not self._recently_attempted():
                await self._fetch()
            # On a failed fetch a stale set is still served: that keeps every service up
            # while the issuer blips. A kid the stale set lacks cannot be verified.
            if self._error is not None and kid not in self._keys:
                raise JWKSUnavailable(self._error)

    def _recently_attempted(self) -> bool:
        return (
            self._attempted_at is not None and self._clock() < self._attempted_at + self._interval
        )

    async def _fetch(self) -> None:
        self._attempted_at = now = self._clock()
        try:
            self._keys = _parse(await self._load())
        except JWKSUnavailable as exc:
            log.warning("jwks fetch failed", extra={"jwks_url": self.url, "reason": str(exc)})
            self._error = str(exc)
        else:
            self._fetched_at, self._error = now, None
        finally:
            self._attempts += 1

    async def _load(self) -> Mapping[str, Any]:
        try:
            if self._provider is not None:
                result = self._provider()
                return await result if inspect.isawaitable(result) else result
            assert self._client is not None
            assert self.url is not None
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return cast(Mapping[str, Any], response.json())
        except httpx.HTTPStatusError as exc:
            raise JWKSUnavailable(f"issuer answered {exc.response.status_code}") from exc
        except Exception as exc:
            # Anything the fetch raises means the same to callers: no keys right now.
            raise JWKSUnavailable(f"fetch failed: {type(exc).__name__}") from exc


def _parse(jwks: object) -> dict[str, Key]:
    raw_keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(raw_keys, list):
        raise JWKSUnavailable("response is not a JWK set")
    keys: dict[str, Key] = {}
    for raw in raw_keys:
        key = _signing_key(raw)
        if key is not None and key.kid is not None:
            keys.setdefault(key.kid, key)
    if not keys:
        raise JWKSUnavailable("key set holds no usable signing key")
    return keys


def _signing_key(raw: object) -> Key | None:
    # Skipped, not fatal (RFC 7517 §5): encryption keys, keys without a kid (tokens must name
    # theirs), shared secrets (a published secret signs nothing), keys this library cannot read.
    if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
        return None
    if raw.get("use", "sig") != "sig" or raw.get("kty") == "oct":
        return None
    try:
        return JWKRegistry.import_key(cast(DictKey, raw))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        log.warning("jwks key skipped", extra={"kid": raw["kid"], "error_type": type(exc).__name__})
        return None
