"""The client credentials grant, run by authlib's authorization server.

authlib's server is synchronous and has no integration for FastAPI. Everything it needs
from the database (the client, its organization, whether the presented secret matched the
stored hash, the signing key) is read beforehand, asynchronously; the server below answers
`query_client` from that, and returns plain values that the route turns into a response.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    AuthorizationServer,
    ClientCredentialsGrant,
    ClientMixin,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload  # type: ignore[import-untyped]
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator  # type: ignore[import-untyped]
from joserfc.jwk import KeySet, RSAKey

from ..scopes import ALL_SCOPES
from .keys import ALGORITHM

GRANT_TYPE = "client_credentials"
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class AuthenticatedClient:
    """A client whose presented secret matched, not revoked, of an active organization."""

    client_id: str
    organization_id: uuid.UUID
    #: What it may be given now: its own scopes within its organization kind's.
    scopes: frozenset[str]
    #: The secret that was checked against the stored hash.
    secret: str


@dataclass(frozen=True)
class Issued:
    body: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    error: str


@dataclass(frozen=True)
class TokenSettings:
    issuer: str
    audience: str
    lifetime: int


def create_token_response(
    *,
    form: Mapping[str, str],
    authorization: str | None,
    token_endpoint: str,
    client: AuthenticatedClient | None,
    key: RSAKey,
    settings: TokenSettings,
) -> Issued | Refused:
    """Run the grant for one token request. `client` is None when authentication failed
    (or was not attempted): the answer is then `invalid_client`, as for an unknown client."""
    server = _TokenServer(client, key, settings)
    request = _TokenRequest(token_endpoint, form, authorization)
    result: Issued | Refused = server.create_token_response(request)
    return result


class _RegisteredClient(ClientMixin):  # type: ignore[misc]
    def __init__(self, client: AuthenticatedClient) -> None:
        self.client = client

    @property
    def organization_id(self) -> uuid.UUID:
        return self.client.organization_id

    def get_client_id(self) -> str:
        return self.client.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client.secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope to grant, or None (`invalid_scope`). Asking for none means all."""
        requested = set(scope.split()) if scope else set(self.client.scopes)
        if not requested or not requested <= self.client.scopes:
            return None
        return " ".join(sorted(requested))


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        super().validate_requested_scope()
        if self.request.client.get_allowed_scope(self.request.payload.scope) is None:
            raise InvalidScopeError()


class _AccessTokens(JWTBearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 access tokens; `kid` is set from the one key of the set."""

    def __init__(self, key: RSAKey, settings: TokenSettings) -> None:
        super().__init__(issuer=settings.issuer, alg=ALGORITHM, expires_generator=settings.lifetime)
        self._keys = KeySet([key])
        self._audience = settings.audience

    def get_jwks(self) -> KeySet:
        return self._keys

    def get_audiences(self, client: _RegisteredClient, user: object, scope: str) -> str:
        return self._audience

    def get_extra_claims(
        self, client: _RegisteredClient, grant_type: str, user: object, scope: str
    ) -> dict[str, Any]:
        return {"org": str(client.organization_id)}

    def get_jti(self, client: _RegisteredClient, grant_type: str, user: object, scope: str) -> str:
        return uuid.uuid4().hex


class _TokenRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(self, uri: str, form: Mapping[str, str], authorization: str | None) -> None:
        # OAuth2Request refuses a plain-http URI. Transport security is the deployment's
        # (TLS ends at its gateway, which this process cannot see), so the check is given
        # a placeholder and the real URI is set after it.
        super().__init__("POST", "https://token.invalid/", headers=_headers(authorization))
        self.uri = uri
        self._form = dict(form)
        self.payload = BasicOAuth2Payload(self._form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


def _headers(authorization: str | None) -> dict[str, str]:
    return {} if authorization is None else {"Authorization": authorization}


class _TokenServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self, client: AuthenticatedClient | None, key: RSAKey, settings: TokenSettings
    ) -> None:
        super().__init__(scopes_supported=sorted(ALL_SCOPES))
        self._client = None if client is None else _RegisteredClient(client)
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", _AccessTokens(key, settings))

    def query_client(self, client_id: str) -> _RegisteredClient | None:
        if self._client is None or client_id != self._client.get_client_id():
            return None
        return self._client

    def save_token(self, token: dict[str, Any], request: _TokenRequest) -> None:
        """Nothing to save: the tokens are self-contained JWTs, valid until they expire."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals: nothing here listens to them."""

    def create_oauth2_request(self, request: _TokenRequest) -> _TokenRequest:
        return request

    def create_json_request(self, request: object) -> None:
        raise NotImplementedError("the token endpoint takes form-encoded requests only")

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> Issued:
        return Issued(dict(body))

    def handle_error_response(self, request: _TokenRequest, error: OAuth2Error) -> Refused:
        return Refused(str(error.error))
