from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey

from icrs_shared.auth import JWKSCache, JWKSUnavailable, TokenValidator

URL = "https://issuer.test/.well-known/jwks.json"
OLD = RSAKey.generate_key(2048, parameters={"kid": "old"})
NEW = ECKey.generate_key("P-256", parameters={"kid": "new"})


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """A JWKS endpoint that counts its requests and serves whatever it is told to."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.requests = 0
        self.fail: Exception | int | None = None
        self.delay = 0.0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert request.url == URL
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.fail, Exception):
            raise self.fail
        if isinstance(self.fail, int):
            return httpx.Response(self.fail, text="down")
        return httpx.Response(200, json=self.jwks)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer(public_jwks(OLD))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def cache(issuer: Issuer, clock: Clock) -> Any:
    client = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handle))
    cache = JWKSCache(URL, client=client, clock=clock)
    yield cache
    await cache.aclose()
    await client.aclose()


async def test_fetches_once_and_serves_from_the_cache(cache: JWKSCache, issuer: Issuer) -> None:
    first = await cache.get("old")
    again = await cache.get("old")
    assert first is not None
    assert first.kid == "old"
    assert again is first
    assert issuer.requests == 1


async def test_unknown_kid_refetches_once_then_waits_for_the_interval(
    cache: JWKSCache, issuer: Issuer, clock: Clock
) -> None:
    await cache.get("old")
    # The set was fetched a moment ago: asking again cannot show a new key yet.
    assert await cache.get("random-0") is None
    assert issuer.requests == 1
    clock.now += 10
    assert await cache.get("random-1") is None
    assert issuer.requests == 2
    # More made-up kids within the interval do not reach the issuer.
    for n in range(20):
        clock.now += 0.4
        assert await cache.get(f"random-{n}") is None
    assert issuer.requests == 2
    clock.now += 10
    assert await cache.get("random-x") is None
    assert issuer.requests == 3


async def test_key_rotation_is_seen_on_the_new_kid(
    cache: JWKSCache, issuer: Issuer, clock: Clock
) -> None:
    validator = TokenValidator(jwks=cache, issuer="https://issuer.test", audience="icrs")
    await cache.get("old")
    clock.now += 11
    issuer.jwks = public_jwks(OLD, NEW)
    claims = {
        "iss": "https://issuer.test",
        "aud": "icrs",
        "sub": "c",
        "client_id": "c",
        "exp": 4_000_000_000,
        "iat": 1_700_000_000,
    }
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "new"}, claims, NEW)
    caller = await validator.validate(token)
    assert caller.client_id == "c"
    assert issuer.requests == 2


async def test_keys_older_than_max_age_are_refetched(
    cache: JWKSCache, issuer: Issuer, clock: Clock
) -> None:
    await cache.get("old")
    clock.now += 299
    await cache.get("old")
    assert issuer.requests == 1
    clock.now += 1
    await cache.get("old")
    assert issuer.requests == 2


async def test_concurrent_misses_share_one_fetch(issuer: Issuer) -> None:
    # No interval: only the coalescing keeps this to one request per burst.
    client = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handle))
    cache = JWKSCache(URL, client=client, min_refresh_interval=0)
    issuer.delay = 0.05
    keys = await asyncio.gather(*(cache.get("old") for _ in range(10)))
    assert all(k is not None and k.kid == "old" for k in keys)
    assert issuer.requests == 1
    misses = await asyncio.gather(*(cache.get(f"bogus-{n}") for n in range(10)))
    assert misses == [None] * 10
    assert issuer.requests == 2
    await client.aclose()


@pytest.mark.parametrize("failure", [500, 404, httpx.ConnectError("refused")])
async def test_fetch_failure_raises_and_is_not_retried_within_the_interval(
    cache: JWKSCache,
    issuer: Issuer,
    clock: Clock,
    failure: Exception | int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    issuer.fail = failure
    with pytest.raises(JWKSUnavailable):
        await cache.get("old")
    assert any(r.getMessage() == "jwks fetch failed" for r in caplog.records)
    with pytest.raises(JWKSUnavailable):
        await cache.get("old")
    assert issuer.requests == 1
    issuer.fail = None
    clock.now += 10
    assert await cache.get("old") is not None
    assert issuer.requests == 2


@pytest.mark.parametrize("body", [{"keys": "nope"}, {"no": "keys"}, [1, 2], {"keys": []}])
async def test_a_response_that_is_not_a_key_set_is_a_failure(
    cache: JWKSCache, issuer: Issuer, body: Any
) -> None:
    issuer.jwks = body
    with pytest.raises(JWKSUnavailable):
        await cache.get("old")


async def test_a_stale_set_is_served_while_the_issuer_is_down(
    cache: JWKSCache, issuer: Issuer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    await cache.get("old")
    clock.now += 301
    issuer.fail = 503
    with caplog.at_level(logging.WARNING):
        assert await cache.get("old") is not None
    assert issuer.requests == 2
    assert [r.getMessage() for r in caplog.records] == ["jwks fetch failed"]
    # A kid the stale set lacks cannot be verified, and says so.
    clock.now += 10
    with pytest.raises(JWKSUnavailable):
        await cache.get("new")


async def test_keys_that_cannot_sign_are_skipped() -> None:
    secret = OctKey.generate_key(256, parameters={"kid": "shared"}).as_dict(private=True)
    encryption = RSAKey.generate_key(2048, parameters={"kid": "enc", "use": "enc"})
    unnamed = {k: v for k, v in NEW.as_dict(private=False).items() if k != "kid"}
    broken = {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"}
    jwks = {"keys": [secret, encryption.as_dict(private=False), unnamed, broken, "junk"]}
    jwks["keys"].append(OLD.as_dict(private=False))
    cache = JWKSCache.static(jwks)
    assert await cache.get("old") is not None
    for kid in ("shared", "enc", "broken"):
        assert await cache.get(kid) is None


async def test_a_set_of_only_unusable_keys_is_a_failure() -> None:
    secret = OctKey.generate_key(256, parameters={"kid": "shared"}).as_dict(private=True)
    with pytest.raises(JWKSUnavailable):
        await JWKSCache.static({"keys": [secret]}).get("shared")


async def test_static_set_can_be_rotated_in_place() -> None:
    jwks = public_jwks(OLD)
    cache = JWKSCache.static(jwks, min_refresh_interval=0)
    assert await cache.get("new") is None
    jwks["keys"].append(NEW.as_dict(private=False))
    key = await cache.get("new")
    assert key is not None
    assert key.kid == "new"


async def test_async_provider_is_awaited() -> None:
    async def provider() -> dict[str, Any]:
        return public_jwks(NEW)

    assert await JWKSCache(provider=provider).get("new") is not None


async def test_aclose_leaves_a_borrowed_client_open() -> None:
    client = httpx.AsyncClient()
    await JWKSCache(URL, client=client).aclose()
    assert not client.is_closed
    await client.aclose()


async def test_aclose_closes_its_own_client() -> None:
    cache = JWKSCache(URL)
    await cache.aclose()
    assert cache._client is not None
    assert cache._client.is_closed


@pytest.mark.parametrize("kwargs", [{}, {"url": URL, "provider": dict}])
def test_exactly_one_source_is_required(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JWKSCache(**kwargs)
