"""A server span and an access-log line per HTTP request, without personal data.

Pure ASGI, so streaming responses pass through untouched. Only the method, the route
template and the status are recorded: never the raw path (it holds ids), the query
string (a search can name a person), headers or the client's address.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .telemetry import context_from_headers, record_error, setup_tracing, tracer

access_log = logging.getLogger("icrs.access")

_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_TRACE_HEADERS = (b"traceparent", b"tracestate")
_SCOPE_MARK = "icrs.traced"

# FastAPI's built-in telemetry records `url.path` and `url.query` on its own server span
# once a tracer provider is set; this middleware replaces it.
FASTAPI_TELEMETRY_OFF: dict[str, Any] = {
    "tracing": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def install_observability(app: FastAPI, service_name: str) -> None:
    """Trace and access-log `app`'s requests; set up the process's tracing if not yet done."""
    setup_tracing(service_name)
    _disable_fastapi_telemetry(app)
    app.add_middleware(TracingMiddleware)


def _disable_fastapi_telemetry(app: FastAPI) -> None:
    # FastAPI reads this dict on every request and at startup; the public way is
    # `FastAPI(telemetry=FASTAPI_TELEMETRY_OFF)`, which this makes unnecessary.
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict):
        config.update(FASTAPI_TELEMETRY_OFF)


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Mounted apps with their own middleware: the outermost one traces the request.
        if scope["type"] != "http" or scope.get(_SCOPE_MARK):
            await self.app(scope, receive, send)
            return
        scope[_SCOPE_MARK] = True
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        span_method = "HTTP" if method == "_OTHER" else method
        root_path = scope.get("root_path", "")
        started = time.perf_counter()
        status: int | None = None
        route: str | None = None

        with tracer().start_as_current_span(
            span_method,
            context=context_from_headers(_trace_headers(scope)),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http")},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            async def send_with_status(message: Message) -> None:
                nonlocal status, route
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    route = route_template(scope, root_path)
                    _on_response(span, span_method, route, status)
                await send(message)

            try:
                await self.app(scope, receive, send_with_status)
            except Exception as exc:
                if status is None:
                    # The server answers 500 after this exception leaves the app.
                    status = 500
                    route = route_template(scope, root_path)
                    _on_response(span, span_method, route, status)
                record_error(span, exc)
                raise
            finally:
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                access_log.info(
                    "%s %s %s",
                    method,
                    route or "-",
                    status if status is not None else "-",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": duration_ms,
                    },
                )


def _trace_headers(scope: Scope) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        key = name.lower()
        if key in _TRACE_HEADERS:
            found.setdefault(key.decode(), []).append(value.decode("latin-1"))
    # W3C: list members of repeated `tracestate` headers combine; `traceparent` must be one.
    return {k: ",".join(v) if k == "tracestate" else v[0] for k, v in found.items()}


def _on_response(span: Span, method: str, route: str | None, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if route is not None:
        span.set_attribute("http.route", route)
        span.update_name(f"{method} {route}")
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", str(status))


def route_template(scope: Scope, root_path: str = "") -> str | None:
    """The matched route's template (`/v1/cases/{case_id}`), or None when nothing matched.

    `root_path` is the one the request arrived with; what mounts added to it since is
    part of the template.
    """
    route = scope.get("route")
    if route is None:
        return None
    mounted = str(scope.get("root_path", ""))
    prefix = mounted[len(root_path) :] if mounted.startswith(root_path) else ""
    if isinstance(route, Mount):
        return prefix + "/{path}"
    # FastAPI keeps the route object of an included router, whose own template lacks
    # the include prefix; the full template is on its routing context (private, hence
    # the defensive lookup, falling back to the route's template).
    fastapi_scope = scope.get("fastapi")
    effective = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    if effective is not None and getattr(effective, "original_route", None) is route:
        template = getattr(effective, "path_format", None)
        if isinstance(template, str) and template:
            return prefix + template
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return prefix + template if isinstance(template, str) else None
