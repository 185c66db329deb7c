"""Routes of the partners service: the OAuth 2.0 authorization server (contract §3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from icrs_shared.runtime import RuntimeDep, SessionDep

from ..scopes import ALL_SCOPES
from .form import FORM_TYPE, MAX_BODY
from .responses import slow_down, token_error, token_issued
from .schemas import JsonWebKeySet, ServerMetadata, TokenError, TokenForm, TokenResponse
from .server import AUTH_METHODS, GRANT_TYPE, Issued, Refused
from .service import issue_token
from .state import JWKS_PATH, TOKEN_PATH, authorization_server

router = APIRouter(tags=["oauth"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": TokenError, "description": description}
    for status, description in (
        (400, "invalid_request, invalid_scope, unsupported_grant_type"),
        (
            401,
            "invalid_client: unknown client, wrong secret, or a client that may not have "
            "a token (revoked, or its organization is not active)",
        ),
        (429, "slow_down: too many requests (see Retry-After)"),
    )
}


@router.post(
    TOKEN_PATH,
    summary="Get an access token (client credentials grant)",
    description=(
        "Authenticate with HTTP Basic (client_secret_basic) or with client_id and "
        "client_secret in the form (client_secret_post). The token is an RFC 9068 JWT."
    ),
    response_model=TokenResponse,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {FORM_TYPE: {"schema": TokenForm.model_json_schema()}},
        }
    },
)
async def token(request: Request, runtime: RuntimeDep, session: SessionDep) -> JSONResponse:
    outcome = await issue_token(
        session=session,
        server=authorization_server(runtime),
        content_type=request.headers.get("content-type"),
        body=await _body(request),
        authorization=request.headers.get("authorization"),
        remote=request.client.host if request.client else "",
    )
    if isinstance(outcome, Issued):
        return token_issued(outcome.body)
    if isinstance(outcome, Refused):
        return token_error(outcome.error)
    return slow_down(outcome.retry_after)


@router.get(
    JWKS_PATH,
    summary="The public keys that sign access tokens (JWK set)",
    response_model=JsonWebKeySet,
)
async def jwks(runtime: RuntimeDep, response: Response) -> dict[str, Any]:
    # Short: a new key is published minutes before it signs anything.
    response.headers["Cache-Control"] = "public, max-age=60"
    return await authorization_server(runtime).keys.jwks()


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
    response_model=ServerMetadata,
)
async def metadata(runtime: RuntimeDep, response: Response) -> ServerMetadata:
    server = authorization_server(runtime)
    response.headers["Cache-Control"] = "public, max-age=300"
    return ServerMetadata(
        issuer=server.issuer,
        token_endpoint=server.token_endpoint,
        jwks_uri=server.jwks_uri,
        grant_types_supported=[GRANT_TYPE],
        token_endpoint_auth_methods_supported=list(AUTH_METHODS),
        scopes_supported=sorted(ALL_SCOPES),
        response_types_supported=[],
    )


async def _body(request: Request) -> bytes | None:
    """The body, or None when it is larger than any token request."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)
