"""One domain error type, rendered as RFC 9457 problem details for every error.

Handlers never echo the input that failed validation: it may hold personal data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .db import is_transient

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:icrs:problem:"

log = logging.getLogger(__name__)


class FieldError(BaseModel):
    """One invalid field: where it is (dotted path) and what is wrong with it."""

    field: str
    message: str
    code: str


class Problem(BaseModel):
    """The RFC 9457 body every error answers with (as documented in OpenAPI)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class DomainError(Exception):
    """An error the caller can act on; `status` is the HTTP status it maps to."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = dict(headers) if headers else None
        self.extra = dict(extra) if extra else {}

    def body(self) -> dict[str, Any]:
        return problem_body(
            self.status,
            code=self.code,
            title=self.title,
            detail=self.detail,
            errors=self.errors,
            extra=self.extra,
        )


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(DomainError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class PreconditionFailed(DomainError):
    status, code, title = 412, "precondition-failed", "Precondition failed"


class RequestTimeout(DomainError):
    status, code, title = 408, "request-timeout", "Request timeout"


class ContentTooLarge(DomainError):
    status, code, title = 413, "content-too-large", "Content too large"


class PreconditionRequired(DomainError):
    status, code, title = 428, "precondition-required", "Precondition required"


class Invalid(DomainError):
    status, code, title = 422, "validation-error", "Invalid request"


class TooManyRequests(DomainError):
    status, code, title = 429, "too-many-requests", "Too many requests"


class ServiceUnavailable(DomainError):
    status, code, title = 503, "unavailable", "Service unavailable"


def nested_too_deeply(detail: str = "nested too deeply") -> Invalid:
    """A JSON body nested deeper than anything the API takes: bad input like any other
    unreadable body."""
    error = FieldError(field="body", message="nested too deeply", code="json_invalid")
    return Invalid(detail, errors=[error])


def problem_body(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    errors: Sequence[FieldError] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    phrase = _phrase(status)
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code if code else "about:blank",
        "title": title or phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = [e.model_dump() for e in errors]
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return body


def problem_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(raw: Sequence[Any]) -> list[FieldError]:
    """Pydantic errors as field errors, without the offending input or its context."""
    out: list[FieldError] = []
    for err in raw:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            where, loc = loc[0], loc[1:]
            field = ".".join(loc) if loc else where
            if where != "body" and loc:
                field = f"{where}.{field}"
        else:
            field = ".".join(loc) or "body"
        if err.get("type") == "json_invalid":
            field = "body"  # its location is an offset into the text, not a field
        out.append(
            FieldError(field=field, message=str(err.get("msg", "invalid")), code=err["type"])
        )
    return out


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return problem_response(exc.status, exc.body(), exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors())
    body = problem_body(
        422,
        code="validation-error",
        title="Invalid request",
        detail=f"{len(errors)} invalid field(s)",
        errors=errors,
    )
    return problem_response(422, body)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        return await _domain_error(request, nested_too_deeply())
    detail: str | None = exc.detail if isinstance(exc.detail, str) else None
    if detail == _phrase(exc.status_code):
        detail = None
    body = problem_body(exc.status_code, detail=detail)
    return problem_response(exc.status_code, body, exc.headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The exception text may hold data; log its type and the route only.
    if is_transient(exc):
        log.warning(
            "a dependency is unavailable",
            extra={"error_type": type(exc).__name__, "route": _route_of(request)},
        )
        unavailable = ServiceUnavailable(
            "the service cannot reach its database; try again", headers={"Retry-After": "1"}
        )
        return await _domain_error(request, unavailable)
    log.error(
        "unhandled error",
        exc_info=(type(exc), exc, None),
        extra={"error_type": type(exc).__name__, "route": _route_of(request)},
    )
    return problem_response(500, problem_body(500, code="internal-error"))


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "?")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
    _document_problems_as_served(app)


def _document_problems_as_served(app: FastAPI) -> None:
    """Make the OpenAPI document say what every error response is: a `Problem` served as
    `application/problem+json`.

    FastAPI files a response `model` under the route's own media type (JSON, or text for a
    text route), beside the empty `application/problem+json` entry; and a route that adds
    its own words to a status (`409: {"description": ...}`) replaces the app's entry for
    it, content and all. Clients and schema checks would expect bodies never sent, and
    nothing would describe the ones that are."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for item in document.get("paths", {}).values():
                for operation in item.values():
                    if isinstance(operation, dict):
                        for status, response in operation.get("responses", {}).items():
                            _document_problem(str(status), response)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}


def _document_problem(status: str, response: dict[str, Any]) -> None:
    content = response.get("content")
    if not content:
        if status.startswith("4"):  # every 4xx is a problem (contract §9)
            response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_SCHEMA)}}
        return
    if PROBLEM_JSON not in content or "schema" in content[PROBLEM_JSON]:
        return
    for media_type, entry in list(content.items()):
        if media_type != PROBLEM_JSON and entry.get("schema") == _PROBLEM_SCHEMA:
            content[PROBLEM_JSON] = content.pop(media_type)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": _phrase(code)}
    for code in (400, 401, 403, 404, 409, 412, 422, 428, 429)
}
