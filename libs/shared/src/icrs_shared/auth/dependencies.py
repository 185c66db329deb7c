"""FastAPI dependencies that authenticate the caller and check its scopes.

Each service's lifespan sets `app.state.token_validator` (a `TokenValidator`, or any object
with the same `validate`, such as a fake in unit tests) before the app serves requests.
"""

# No `from __future__ import annotations` here: FastAPI reads the dependency's signature at
# runtime, and its annotation refers to `required`, a local it could not resolve from a string.

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Protocol, cast

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from icrs_shared.auth.caller import Caller
from icrs_shared.auth.errors import InsufficientScope, MissingToken

# auto_error=False: a missing token must answer in problem+json with our challenge, not
# FastAPI's plain HTTPException. The scheme also puts the requirement in the OpenAPI document.
bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="An OAuth 2.0 access token (RFC 9068 JWT) from the client credentials grant.",
    auto_error=False,
)


class AccessTokenValidator(Protocol):
    async def validate(self, token: str) -> Caller: ...


CallerDependency = Callable[..., Coroutine[Any, Any, Caller]]


def require_scopes(*scopes: str) -> CallerDependency:
    """A dependency giving the `Caller` of a valid token that holds every one of `scopes`.

    `caller: Annotated[Caller, Depends(require_scopes("cases:read"))]`
    """
    required = frozenset(scopes)

    async def authenticated_caller(
        request: Request,
        credentials: Annotated[
            HTTPAuthorizationCredentials | None, Security(bearer_scheme, scopes=sorted(required))
        ],
    ) -> Caller:
        if credentials is None:
            raise MissingToken()
        caller = await token_validator(request).validate(credentials.credentials)
        if not caller.has_scopes(*required):
            raise InsufficientScope(required)
        return caller

    return authenticated_caller


def token_validator(request: Request) -> AccessTokenValidator:
    validator = getattr(request.app.state, "token_validator", None)
    if validator is None:
        raise RuntimeError("app.state.token_validator is not set; the lifespan must set it")
    return cast(AccessTokenValidator, validator)
