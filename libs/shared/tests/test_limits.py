"""Request limits, on a bare ASGI app fed body chunks as slowly and as far as a test likes:
what the app gets to read, and what the client is answered."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from icrs_shared.limits import JsonDepth, LimitsMiddleware, RequestLimits

LIMITS = RequestLimits(
    max_body_bytes=1000,
    max_upload_bytes=10_000,
    max_json_depth=8,
    body_timeout=0.3,
    upload_timeout=1.0,
    uploads=frozenset({("POST", "/upload")}),
)


class Echo:
    """An app that reads the whole body and answers how much it read."""

    def __init__(self) -> None:
        self.read = 0
        self.called = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise OSError("the client went away")  # as Starlette's ClientDisconnect would
            self.read += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(self.read).encode()})


class Answered:
    def __init__(self, messages: list[Message]) -> None:
        self.status = messages[0]["status"]
        self.headers = {k.decode(): v.decode() for k, v in messages[0]["headers"]}
        self.body = b"".join(m.get("body", b"") for m in messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: Any,
    chunks: Sequence[bytes],
    *,
    path: str = "/things",
    headers: dict[str, str] | None = None,
    pause: float = 0.0,
    limits: RequestLimits = LIMITS,
) -> Answered:
    """`chunks` sent as the body, `pause` seconds apart; the client then waits."""
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    pending = list(chunks)
    sent: list[Message] = []

    async def receive() -> Message:
        if not pending:
            await asyncio.sleep(3600)  # the client has nothing more to send
        if pause:
            await asyncio.sleep(pause)
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(LimitsMiddleware(app, limits)(scope, receive, send), 5)
    return Answered(sent)


def chunked() -> dict[str, str]:
    return {"transfer-encoding": "chunked", "content-type": "application/json"}


async def test_a_body_within_the_limit_goes_through() -> None:
    app = Echo()
    r = await call(app, [b"[1,", b"2]"], headers=chunked())
    assert (r.status, r.body, app.read) == (200, b"5", 5)
    assert "connection" not in r.headers


async def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    app = Echo()
    r = await call(app, [], headers={"content-length": "1001"})
    assert not app.called
    assert (r.status, r.headers["content-type"]) == (413, "application/problem+json")
    assert r.json()["type"] == "urn:icrs:problem:content-too-large"
    assert r.json()["title"] == "Content too large"
    assert r.headers["connection"] == "close"


async def test_a_streamed_body_is_cut_at_the_limit() -> None:
    app = Echo()
    r = await call(app, [b"x" * 400] * 10, headers={"transfer-encoding": "chunked"})
    assert r.status == 413
    assert r.headers["connection"] == "close"
    assert app.read <= LIMITS.max_body_bytes


async def test_an_upload_route_has_its_own_larger_limit() -> None:
    app = Echo()
    r = await call(app, [b"x" * 1000] * 5, path="/upload", headers={"content-length": "5000"})
    assert (r.status, app.read) == (200, 5000)
    r = await call(Echo(), [], path="/upload", headers={"content-length": "10001"})
    assert r.status == 413
    assert "split it" in r.json()["detail"]


async def test_json_nested_too_deep_is_refused_before_it_reaches_the_app() -> None:
    app = Echo()
    body = b"[" * 450 + b"]" * 450  # within the size limit, far too deep
    chunks = [body[i : i + 100] for i in range(0, len(body), 100)]
    r = await call(app, chunks, headers=chunked())
    assert r.status == 422
    problem = r.json()
    assert problem["type"] == "urn:icrs:problem:validation-error"
    assert problem["errors"] == [
        {"field": "body", "message": "nested too deeply", "code": "json_invalid"}
    ]
    assert app.read == 0
    assert "connection" not in r.headers  # the rest was read: the connection stays usable


async def test_depth_is_checked_only_for_json() -> None:
    for media, status in (("text/csv", 200), ("application/merge-patch+json", 422)):
        r = await call(Echo(), [b"[" * 50], headers={"content-type": media, "content-length": "50"})
        assert r.status == status, media


async def test_a_body_too_slow_gets_408_and_a_closed_connection() -> None:
    app = Echo()
    started = time.monotonic()
    r = await call(app, [b"x"] * 100, headers={"content-length": "100"}, pause=0.05)
    assert (r.status, r.headers["connection"]) == (408, "close")
    assert r.json()["type"] == "urn:icrs:problem:request-timeout"
    assert time.monotonic() - started < 1.0


async def test_an_answer_before_the_body_is_in_closes_the_connection() -> None:
    async def hasty(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    r = await call(hasty, [b"x"] * 3, headers={"content-length": "3"})
    assert (r.status, r.headers["connection"]) == (401, "close")


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b'{"a": [1, {"b": "]]]"}]}', 3),
        (b'["\\"[[[", "\\\\", [[]]]', 3),
        (b'{"a": "\\\\\\"{{{{"}', 1),
        (b"]]]][[", 2),
    ],
)
def test_json_depth_is_counted_outside_strings_across_any_split(text: bytes, depth: int) -> None:
    def fits(limit: int, pieces: list[bytes]) -> bool:
        scan = JsonDepth(limit)
        return all(scan.feed(piece) for piece in pieces)

    splits = [[text[:cut], text[cut:]] for cut in range(len(text) + 1)]
    splits.append([text[i : i + 1] for i in range(len(text))])
    for pieces in splits:
        assert fits(depth, pieces), pieces
        assert not fits(depth - 1, pieces), pieces
