"""Response shapes of the authorization server (as documented in OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TokenResponse(BaseModel):
    """RFC 6749 §5.1."""

    access_token: str = Field(description="An RFC 9068 JWT access token.")
    token_type: str = Field(examples=["Bearer"])
    expires_in: int = Field(description="Seconds the token is valid for.")
    scope: str | None = Field(default=None, description="The scopes granted, space-separated.")


class TokenError(BaseModel):
    """RFC 6749 §5.2, with the RFC 9457 members every ICRS error has."""

    error: str = Field(
        examples=["invalid_client"],
        description=(
            "invalid_request, invalid_client, invalid_scope, unsupported_grant_type, "
            "unauthorized_client, or slow_down (429)"
        ),
    )
    error_description: str
    type: str
    title: str
    status: int


class TokenForm(BaseModel):
    """The form of a token request (application/x-www-form-urlencoded)."""

    grant_type: str = Field(examples=["client_credentials"])
    scope: str | None = Field(
        default=None, description="Space-separated; default: every scope the client holds."
    )
    client_id: str | None = Field(default=None, description="client_secret_post only.")
    client_secret: str | None = Field(default=None, description="client_secret_post only.")


class JsonWebKeySet(BaseModel):
    keys: list[dict[str, Any]]


class ServerMetadata(BaseModel):
    """RFC 8414 authorization server metadata."""

    issuer: str
    token_endpoint: str
    jwks_uri: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    scopes_supported: list[str]
    response_types_supported: list[str]
