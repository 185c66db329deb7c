"""Answers of the token endpoint: RFC 6749 §5.1 tokens and §5.2 errors.

An error body is the RFC 6749 JSON (`error`, `error_description`) that OAuth clients read,
with the RFC 9457 members (`type`, `title`, `status`) the rest of the platform answers with.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

from icrs_shared.auth.errors import REALM
from icrs_shared.errors import PROBLEM_BASE

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

#: One fixed description per error: nothing a client sent is echoed, and no answer says
#: whether a client id exists.
DESCRIPTIONS = {
    "invalid_request": "the request is malformed",
    "invalid_client": "client authentication failed",
    "invalid_grant": "the grant is invalid",
    "unauthorized_client": "the client may not use this grant type",
    "unsupported_grant_type": "only the client_credentials grant is supported",
    "invalid_scope": "the requested scope is unknown or beyond what the client may hold",
    "slow_down": "too many token requests; retry later",
}


def token_error(
    error: str, *, description: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    if error == "invalid_client":
        # 401 whichever way the client authenticated, so that the status says nothing
        # either; the challenge names the scheme this server supports.
        status, extra = 401, {"WWW-Authenticate": f'Basic realm="{REALM}"'}
    elif error == "slow_down":
        status, extra = 429, {}
    else:
        status, extra = 400, {}
    body: dict[str, Any] = {
        "error": error,
        "error_description": description or DESCRIPTIONS.get(error, "the request failed"),
        "type": PROBLEM_BASE + "oauth-" + error.replace("_", "-"),
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **extra, **(headers or {})})


def slow_down(retry_after: int) -> JSONResponse:
    return token_error("slow_down", headers={"Retry-After": str(retry_after)})


def token_issued(body: Mapping[str, Any]) -> JSONResponse:
    return JSONResponse(dict(body), status_code=200, headers=NO_STORE)
