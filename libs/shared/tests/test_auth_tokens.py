from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from icrs_shared.auth import Caller, InvalidToken, JWKSCache, TokenValidator
from icrs_shared.errors import Unauthorized
from icrs_shared.settings import Settings

ISSUER = "https://issuer.test"
AUDIENCE = "icrs"
NOW = 1_700_000_000
LEEWAY = 30

RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
ED = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})
OTHER_RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "client-a",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW,
        "jti": "token-1",
        "client_id": "client-a",
        "org": "org-1",
        "scope": "cases:read cases:write",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    key: Key = RSA, alg: str = "RS256", *, header: dict[str, Any] | None = None, **changes: Any
) -> str:
    protected = {"alg": alg, "typ": "at+jwt", "kid": key.kid, **(header or {})}
    protected = {k: v for k, v in protected.items() if v is not None}
    return jwt.encode(protected, claims(**changes), key, algorithms=[alg], default_type=None)


def make_validator(**kwargs: Any) -> TokenValidator:
    options: dict[str, Any] = {
        "jwks": JWKSCache.static(public_jwks(RSA, EC, ED)),
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "leeway": LEEWAY,
        "clock": lambda: NOW,
    }
    options.update(kwargs)
    return TokenValidator(**options)


@pytest.fixture
def validator() -> TokenValidator:
    return make_validator()


async def refused(validator: TokenValidator, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        await validator.validate(token)
    assert info.value.detail is not None
    return info.value.detail


async def test_valid_token_yields_the_caller(validator: TokenValidator) -> None:
    caller = await validator.validate(sign())
    assert caller == Caller(
        client_id="client-a",
        organization_id="org-1",
        scopes=frozenset({"cases:read", "cases:write"}),
        subject="client-a",
        token_id="token-1",
    )


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
@pytest.mark.parametrize(("key", "alg"), [(EC, "ES256"), (ED, "EdDSA")])
async def test_ec_and_okp_keys_verify(validator: TokenValidator, key: Key, alg: str) -> None:
    caller = await validator.validate(sign(key, alg))
    assert caller.client_id == "client-a"


async def test_optional_claims_and_alternative_shapes(validator: TokenValidator) -> None:
    token = sign(
        aud=["other", AUDIENCE],
        scope=None,
        scp=["referrals:read"],
        org=None,
        jti=None,
        header={"typ": "Application/AT+JWT"},
    )
    caller = await validator.validate(token)
    assert caller.scopes == frozenset({"referrals:read"})
    assert caller.organization_id is None
    assert caller.token_id is None


async def test_organization_claim_is_configurable() -> None:
    validator = make_validator(org_claim="https://icrs/org")
    changes: dict[str, Any] = {"https://icrs/org": "org-9", "org": None}
    caller = await validator.validate(sign(**changes))
    assert caller.organization_id == "org-9"


async def test_expired_token_is_refused_beyond_the_leeway(validator: TokenValidator) -> None:
    assert await refused(validator, sign(exp=NOW - LEEWAY - 1)) == "token expired"
    # Within the leeway it still passes: clocks drift.
    assert (await validator.validate(sign(exp=NOW - LEEWAY + 5))).subject == "client-a"


async def test_not_yet_valid_token_is_refused(validator: TokenValidator) -> None:
    assert await refused(validator, sign(nbf=NOW + LEEWAY + 1)) == "token not yet valid"
    assert await refused(validator, sign(iat=NOW + LEEWAY + 1)) == "token issued in the future"


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"iss": "https://evil.test"}, "token issuer not accepted"),
        ({"iss": None}, "token issuer not accepted"),
        ({"aud": "another-api"}, "token audience not accepted"),
        ({"aud": ["a", "b"]}, "token audience not accepted"),
        ({"aud": None}, "token audience not accepted"),
        ({"exp": None}, "token exp claim missing"),
        ({"exp": True}, "token exp claim invalid"),
        ({"exp": "tomorrow"}, "token exp claim invalid"),
        ({"iat": None}, "token iat claim missing"),
        ({"nbf": "soon"}, "token nbf claim invalid"),
        ({"sub": None}, "token subject missing"),
        ({"client_id": ""}, "token client missing"),
        ({"org": 7}, "token organization invalid"),
        ({"scope": 5}, "token scope invalid"),
        ({"jti": ["x"]}, "token id invalid"),
    ],
)
async def test_bad_claims_are_refused(
    validator: TokenValidator, changes: dict[str, Any], detail: str
) -> None:
    assert await refused(validator, sign(**changes)) == detail


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt+x"])
async def test_wrong_type_is_refused(validator: TokenValidator, typ: str | None) -> None:
    assert await refused(validator, sign(header={"typ": typ})) == "token type not accepted"


async def test_unknown_or_missing_kid_is_refused(validator: TokenValidator) -> None:
    assert await refused(validator, sign(header={"kid": "nobody"})) == "token signing key unknown"
    assert await refused(validator, sign(header={"kid": None})) == "token key id missing"


async def test_alg_none_is_refused_even_when_configured() -> None:
    validator = make_validator(algorithms=["none", "RS256"])
    assert validator.algorithms == frozenset({"RS256"})
    token = f"{b64json({'alg': 'none', 'typ': 'at+jwt', 'kid': 'rsa-1'})}.{b64json(claims())}."
    assert await refused(validator, token) == "token algorithm not accepted"


async def test_hmac_signed_with_the_public_key_is_refused() -> None:
    # The key-confusion attack: HS256 keyed with the issuer's public key, which anyone has.
    validator = make_validator(algorithms=["HS256", "RS256"])
    assert validator.algorithms == frozenset({"RS256"})
    secret = RSA.as_pem(private=False)
    signing_input = (
        f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'rsa-1'})}.{b64json(claims())}"
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert await refused(validator, f"{signing_input}.{b64(mac)}") == "token algorithm not accepted"


async def test_key_of_another_type_than_the_algorithm_is_refused(validator: TokenValidator) -> None:
    # Signed with the EC key but naming the RSA key's kid.
    token = sign(EC, "ES256", header={"kid": "rsa-1"})
    assert await refused(validator, token) == "token signing key does not match algorithm"


async def test_key_published_for_another_algorithm_is_refused() -> None:
    jwks = {"keys": [RSA.as_dict(private=False, alg="RS256")]}
    validator = make_validator(jwks=JWKSCache.static(jwks))
    assert (
        await refused(validator, sign(RSA, "PS256")) == "token signing key does not match algorithm"
    )


async def test_tampered_payload_fails_the_signature(validator: TokenValidator) -> None:
    header, _, signature = sign().split(".")
    forged = f"{header}.{b64json(claims(scope='partners:admin'))}.{signature}"
    assert await refused(validator, forged) == "token signature invalid"


async def test_token_signed_by_another_key_with_the_same_kid_is_refused(
    validator: TokenValidator,
) -> None:
    assert await refused(validator, sign(OTHER_RSA)) == "token signature invalid"


async def test_signature_is_checked_before_the_claims(validator: TokenValidator) -> None:
    # Expired, foreign issuer and wrong audience: were claims read first, one of those would
    # be the answer.
    header, payload, _ = sign(exp=NOW - 3600, iss="https://evil.test", aud="x").split(".")
    _, _, other_signature = sign().split(".")
    assert await refused(validator, f"{header}.{payload}.{other_signature}") == (
        "token signature invalid"
    )


async def test_signed_payload_that_is_not_a_json_object_is_refused(
    validator: TokenValidator,
) -> None:
    token = jws.serialize_compact({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"}, b"[1]", RSA)
    assert await refused(validator, token) == "token payload invalid"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        "é.é.é",
        f"{b64json(['alg', 'RS256'])}.{b64json(claims())}.c2ln",
        f"{b64(b'not json')}.{b64json(claims())}.c2ln",
        "x" * 20_000,
    ],
)
async def test_garbage_is_malformed(validator: TokenValidator, token: str) -> None:
    assert await refused(validator, token) == "token malformed"


async def test_critical_header_extensions_are_refused(validator: TokenValidator) -> None:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1", "b64": False, "crit": ["b64"]}
    token = f"{b64json(header)}.{b64json(claims())}.c2ln"
    assert await refused(validator, token) == "token header not accepted"


async def test_unreachable_key_set_is_a_401() -> None:
    def unreachable() -> dict[str, Any]:
        raise ConnectionError("issuer down")

    validator = make_validator(jwks=JWKSCache(provider=unreachable))
    assert await refused(validator, sign()) == "token signing keys unavailable"


async def test_refusal_is_an_unauthorized_with_a_challenge_and_never_echoes_the_token(
    validator: TokenValidator, caplog: pytest.LogCaptureFixture
) -> None:
    token = sign(iss="https://evil.test")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Unauthorized) as info:
        await validator.validate(token)
    error = info.value
    assert error.status == 401
    assert error.headers == {
        "WWW-Authenticate": (
            'Bearer realm="icrs", error="invalid_token", '
            'error_description="token issuer not accepted"'
        )
    }
    payload = token.split(".")[1]
    assert payload not in str(error.body())
    assert caplog.records, "a refusal is logged"
    assert all(
        payload not in r.getMessage() and payload not in str(r.__dict__) for r in caplog.records
    )


async def test_from_settings_takes_the_configuration() -> None:
    settings = Settings(
        auth_issuer="https://login.example.org/realms/ddr",
        auth_audience="icrs-api",
        auth_algorithms=["ES256", "HS512"],
        auth_org_claim="organization",
        auth_leeway=5,
    )
    validator = TokenValidator.from_settings(settings, jwks=JWKSCache.static(public_jwks(EC)))
    assert validator.issuer == "https://login.example.org/realms/ddr"
    assert validator.audience == "icrs-api"
    assert validator.algorithms == frozenset({"ES256"})
    assert validator.org_claim == "organization"
    assert validator.leeway == 5
    await validator.aclose()


async def test_default_key_set_url_comes_from_settings() -> None:
    validator = TokenValidator.from_settings(Settings(public_url="http://127.0.0.1:9000/"))
    assert validator.jwks.url == "http://127.0.0.1:9000/.well-known/jwks.json"
    await validator.aclose()


@pytest.mark.parametrize("algorithms", [["HS256", "none"], ["RS257"]])
def test_configuration_without_a_usable_algorithm_fails_fast(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        make_validator(algorithms=algorithms)
