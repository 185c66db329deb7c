"""What a request may send: how large its body is, how deeply its JSON nests, how long it
takes to arrive. Pure ASGI and in front of routing, so a refusal costs no parsing, no
authentication and no database work.

- A body larger than the limit is refused with 413: at once when its Content-Length says
  so, else as soon as the bytes received pass the limit; nothing beyond is read, and the
  connection is closed, since the rest of the body is still on its way.
- A JSON body nested deeper than the limit is refused with 422 as soon as a scan of the
  bytes received finds it, before any parser sees them. The rest of the body (within the
  size limit) is read and dropped, so the connection stays usable.
- A body not received in full within its time, counted from the end of the request's
  headers, gets 408 and the connection is closed.

File uploads (routes named in `RequestLimits.uploads`) get their own, larger, limits.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import (
    ContentTooLarge,
    DomainError,
    RequestTimeout,
    nested_too_deeply,
    problem_response,
)
from .settings import ServiceSettings

log = logging.getLogger(__name__)

_DISCONNECT: Message = {"type": "http.disconnect"}
_CLOSE = (b"connection", b"close")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int
    max_upload_bytes: int
    max_json_depth: int
    body_timeout: float
    upload_timeout: float
    #: (method, path) of the routes whose body is an uploaded file.
    uploads: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(
        cls, settings: ServiceSettings, uploads: Collection[tuple[str, str]] = ()
    ) -> RequestLimits:
        return cls(
            max_body_bytes=settings.max_body_bytes,
            max_upload_bytes=settings.max_import_bytes,
            max_json_depth=settings.max_json_depth,
            body_timeout=settings.body_timeout,
            upload_timeout=settings.import_body_timeout,
            uploads=frozenset((method.upper(), path) for method, path in uploads),
        )


def install_limits(app: FastAPI, limits: RequestLimits) -> None:
    app.add_middleware(LimitsMiddleware, limits=limits)


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _Guarded(scope, receive, send, self.limits).run(self.app)


class _Guarded:
    """One request, its body received through the limits."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limits: RequestLimits) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        headers = Headers(scope=scope)
        upload = (scope["method"], _path(scope)) in limits.uploads
        self.upload = upload
        self.max_bytes = limits.max_upload_bytes if upload else limits.max_body_bytes
        timeout = limits.upload_timeout if upload else limits.body_timeout
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.declared = _content_length(headers)
        # Only HTTP/1 has a connection to close, and there a body is announced.
        self.closable = scope.get("http_version", "1.1") in ("1.0", "1.1")
        self.has_body = bool(self.declared) or "transfer-encoding" in headers
        self.depth = (
            JsonDepth(limits.max_json_depth)
            if not upload and _is_json(headers.get("content-type"))
            else None
        )
        self.received = 0
        self.complete = False
        self.started = False
        self.refused = False

    async def run(self, app: ASGIApp) -> None:
        if self.declared is not None and self.declared > self.max_bytes:
            await self._refuse(self._too_large(), close=True)
            return
        try:
            await app(self.scope, self.receive, self.send)
        except Exception as exc:
            if not self.refused:
                raise
            # The app stumbled on the body cut short after the refusal went out.
            log.debug("after a refused request body", extra={"error_type": type(exc).__name__})

    async def receive(self) -> Message:
        if self.refused:
            return _DISCONNECT
        if self.complete:
            # The body is in; what is left to wait for is the client going away.
            return await self._receive()
        message = await self._next()
        if message is None:
            return _DISCONNECT
        if self.depth is not None and not self.depth.feed(message.get("body", b"")):
            await self._drain()
            if not self.refused:
                detail = f"the JSON body nests deeper than {self.depth.limit} levels"
                await self._refuse(nested_too_deeply(detail), close=False)
            return _DISCONNECT
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # the refusal has answered
        if message["type"] == "http.response.start":
            self.started = True
            if self.has_body and not self.complete and self.closable:
                # An answer before the whole body: the rest would keep the connection
                # (uvicorn stops its keep-alive timer whenever a byte arrives).
                message = {**message, "headers": _with_close(message.get("headers", []))}
        await self._send(message)

    async def _next(self) -> Message | None:
        """The next part of the body, or None once it is refused (too large, too slow)."""
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            await self._refuse(
                RequestTimeout("the request body did not arrive in time"), close=True
            )
            return None
        if message["type"] != "http.request":
            self.complete = True  # the client has gone
            return message
        self.received += len(message.get("body", b""))
        self.complete = not message.get("more_body", False)
        if self.received > self.max_bytes:
            await self._refuse(self._too_large(), close=True)
            return None
        return message

    async def _drain(self) -> None:
        while not self.complete:
            if await self._next() is None:
                return

    async def _refuse(self, problem: DomainError, *, close: bool) -> None:
        self.refused = True
        if self.started:
            return  # the app has answered already; the body just stops here
        self.started = True
        headers = dict(problem.headers or {})
        if close and self.closable:
            headers["connection"] = "close"
        response = problem_response(problem.status, problem.body(), headers)
        await response(self.scope, self._receive, self._send)

    def _too_large(self) -> ContentTooLarge:
        limit = self.max_bytes
        size = f"{limit // _MIB} MiB" if limit % _MIB == 0 else f"{limit} bytes"
        if self.upload:
            return ContentTooLarge(f"the file is larger than {size}: split it into smaller files")
        return ContentTooLarge(f"the request body is larger than {size}")


class JsonDepth:
    """How deeply the JSON text fed to it so far nests, counting brackets outside strings.

    Not a validator: malformed text is the parser's to refuse. It only has to be cheap and
    never wrong about depth for valid JSON, whatever the chunk boundaries.
    """

    _OUTSIDE = re.compile(rb'[\[\]{}"]')
    _INSIDE = re.compile(rb'\\.|"', re.DOTALL)

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self._in_string = False
        self._escaped = False  # a backslash ended the last chunk, inside a string

    def feed(self, chunk: bytes) -> bool:
        """False once the text nests deeper than the limit."""
        pos = 0
        if self._escaped and chunk:
            pos, self._escaped = 1, False
        end = len(chunk)
        while pos < end:
            if self._in_string:
                found = self._INSIDE.search(chunk, pos)
                if found is None:
                    # What is left holds no quote and no escape pair: a backslash in it
                    # can only be the last byte, escaping the next chunk's first.
                    self._escaped = chunk.endswith(b"\\")
                    return True
                pos = found.end()
                if found.group() == b'"':
                    self._in_string = False
                continue
            found = self._OUTSIDE.search(chunk, pos)
            if found is None:
                return True
            pos = found.end()
            char = chunk[found.start()]
            if char == 0x22:  # "
                self._in_string = True
            elif char in (0x5B, 0x7B):  # [ {
                self.depth += 1
                if self.depth > self.limit:
                    return False
            elif self.depth > 0:  # below 0 is malformed: the parser stops there
                self.depth -= 1
        return True


def _path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.rstrip("/") or "/"


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse the body as JSON (it does for `application/json` and
    `application/*+json`; with strict content types, never without a Content-Type)."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _with_close(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if any(name.lower() == b"connection" for name, _ in headers):
        return list(headers)
    return [*headers, _CLOSE]
