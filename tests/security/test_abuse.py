"""Abusive clients are refused without harming the others: oversized bodies, deeply nested
JSON, clients that send their headers or their body too slowly, floods of token requests.

The partners and intake services run on PostgreSQL and RabbitMQ behind one uvicorn server
over real TCP, in the test's event loop, with the server limits `icrs serve` and `icrs up`
use. What concerns connections is driven by hand over raw sockets, byte by byte where
that is the point.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from icrs.cli import server_config
from icrs.services import SERVICES, service_for_path
from icrs_intake.imports.rows import COLUMNS
from icrs_shared.bus import RabbitBus
from icrs_shared.errors import PROBLEM_JSON
from icrs_shared.testing import eventually
from icrs_shared.testing.databases import create_database, drop_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Small limits, so that passing them is quick.
PARTNERS_LIMITS: dict[str, Any] = {"token_burst": 10, "token_failure_burst": 10}
INTAKE_LIMITS: dict[str, Any] = {
    "max_body_bytes": 256 * 1024,
    "max_import_bytes": 1024 * 1024,
    "body_timeout": 2.0,
    "import_body_timeout": 3.0,
}
CASE: dict[str, Any] = {
    "person": {"given_name": "Hodan", "family_name": "Abdi", "sex": "female", "estimated_age": 30},
    "beneficiary_category": "ex_combatant",
    "programme_track": "DDR",
    "area": "SO1101",
}
#: Seconds a connection has to send a request's head (`ICRS_HEAD_TIMEOUT`), small here.
HEAD_TIMEOUT = 2.0
#: The address the flood of token requests comes from (the others come from 127.0.0.1).
FLOOD = "127.0.0.9"
#: The gateway's address: only its X-Forwarded-For is believed.
GATEWAY = "127.0.0.1"
CASEWORK = ["cases:write", "cases:read", "cases:import", "partners:read"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One HTTP/1.1 connection, driven by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, source: str = "127.0.0.1") -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)))

    async def send(self, data: bytes) -> bool:
        """False once the server has closed the connection."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            return False
        return True

    async def reply(self, within: float = 5.0) -> Reply:
        async with asyncio.timeout(within):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in filter(None, lines):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Reply(int(status_line.split()[1]), headers, body)

    async def closed_by_server(self, within: float = 2.0) -> bool:
        try:
            async with asyncio.timeout(within):
                return await self.reader.read(1) == b""
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: icrs.test",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def trickle(
    conn: Connection, data: bytes, started: float, *, within: float, every: float
) -> tuple[Reply, float, int, bool]:
    """Send `data` a byte every `every` seconds until the server answers: its answer, the
    seconds since `started`, the bytes sent, and whether the server closed the connection."""
    answer = asyncio.create_task(conn.reply(within=within))
    sent = 0
    while not answer.done() and await conn.send(data[sent : sent + 1]):
        sent += 1
        await asyncio.wait([answer], timeout=every)
    r = await answer
    elapsed = time.monotonic() - started
    closed = await conn.closed_by_server()
    conn.close()
    return r, elapsed, sent, closed


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@dataclass
class Platform:
    port: int
    http: httpx.AsyncClient
    admin: dict[str, str]
    admin_token: str | None = None

    async def token(self, client_id: str, secret: str) -> str:
        r = await self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=httpx.BasicAuth(client_id, secret),
        )
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token

    async def client(self, name: str, kind: str, scopes: list[str]) -> dict[str, str]:
        """The credentials of a client of a new, verified organization."""
        admin = await self.admin_headers()
        organization = {"name": f"{name} {uuid.uuid4().hex[:6]}", "kind": kind, "country": "SO"}
        r = await self.http.post("/v1/organizations", json=organization, headers=admin)
        assert r.status_code == 201, r.text
        org = r.json()["id"]
        r = await self.http.post(f"/v1/organizations/{org}/verify", json={}, headers=admin)
        assert r.status_code == 200, r.text
        r = await self.http.post(
            f"/v1/organizations/{org}/clients", json={"name": name, "scopes": scopes}, headers=admin
        )
        assert r.status_code == 201, r.text
        return {"client_id": r.json()["client_id"], "secret": r.json()["client_secret"]}

    async def admin_headers(self) -> dict[str, str]:
        if self.admin_token is None:
            credentials = {
                "client_id": self.admin["client_id"],
                "secret": self.admin["client_secret"],
            }
            self.admin_token = await self.token(**credentials)
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def caseworker(self) -> dict[str, str]:
        creds = await self.client("Registry", "government", CASEWORK)
        return {"Authorization": f"Bearer {await self.token(**creds)}"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    postgres_server_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    data_dir = tmp_path_factory.mktemp("abuse")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with AsyncExitStack() as stack:
        bus = RabbitBus(amqp_url, namespace=f"test-{uuid.uuid4().hex[:10]}.", delivery_limit=3)
        await bus.start()
        stack.push_async_callback(bus.close)
        stack.push_async_callback(bus.delete_topology)
        apps: dict[str, FastAPI] = {}
        for name, overrides in (("partners", PARTNERS_LIMITS), ("intake", INTAKE_LIMITS)):
            database = await create_database(postgres_server_url)
            stack.push_async_callback(drop_database, database)
            entry = SERVICES[name]
            settings = entry.make_settings(
                database_url=database, data_dir=data_dir, public_url=url, **overrides
            )
            # Intake fetches the partners service's keys over HTTP, from the server below.
            apps[name] = entry.create_app(settings, bus)
            await stack.enter_async_context(apps[name].router.lifespan_context(apps[name]))

        async def gateway(scope: Scope, receive: Receive, send: Send) -> None:
            await apps[service_for_path(scope.get("path", "")) or "partners"](scope, receive, send)

        # Served as `icrs serve` serves, behind a gateway at 127.0.0.1.
        config = server_config(
            gateway,
            "127.0.0.1",
            port,
            forwarded_allow_ips=GATEWAY,
            head_timeout=HEAD_TIMEOUT,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))

        async def stop() -> None:
            server.should_exit = True
            await serving

        stack.push_async_callback(stop)
        await eventually(lambda: server.started or serving.done(), within=10)
        assert server.started
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10))
        admin = json.loads((data_dir / "admin-client.json").read_text())
        yield Platform(port, http, admin)


async def test_oversized_bodies_are_refused_and_nothing_is_stored(platform: Platform) -> None:
    caseworker = await platform.caseworker()
    limit = INTAKE_LIMITS["max_body_bytes"]

    # Declared too large: refused on the headers alone, the body never asked for.
    declared = await Connection.open(platform.port)
    await declared.send(
        request_head(
            "POST",
            "/v1/cases",
            {**caseworker, "Content-Type": "application/json", "Content-Length": str(10**10)},
        )
    )
    r = await declared.reply()
    assert (r.status, r.headers["content-type"]) == (413, PROBLEM_JSON)
    assert r.json()["type"] == "urn:icrs:problem:content-too-large"
    assert await declared.closed_by_server()

    # Streamed without a length: refused once the bytes received pass the limit.
    padded = {**CASE, "person": {**CASE["person"], "aliases": ["x" * 1000] * 300}}
    body = json.dumps(padded).encode()
    assert len(body) > limit
    streamed = await Connection.open(platform.port)
    await streamed.send(
        request_head(
            "POST",
            "/v1/cases",
            {**caseworker, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        )
    )
    piece = 16 * 1024
    for start in range(0, limit + piece, piece):  # just past the limit, then wait
        await streamed.send(chunk(body[start : start + piece]))
    r = await streamed.reply()
    assert (r.status, r.json()["status"]) == (413, 413)
    assert await streamed.closed_by_server()

    # The import route has a limit of its own, larger, and it is enforced too.
    file = csv_file(rows=3, padding=INTAKE_LIMITS["max_import_bytes"] // 3 + 1)
    csv_head = {**caseworker, "Content-Type": "text/csv"}
    too_big = await Connection.open(platform.port)
    await too_big.send(
        request_head("POST", "/v1/imports", {**csv_head, "Content-Length": str(len(file))})
    )
    r = await too_big.reply()
    assert r.status == 413
    assert "split it into smaller files" in r.json()["detail"]

    # Nothing of it was stored.
    r = await platform.http.get("/v1/cases", headers=caseworker)
    assert (r.status_code, r.json()["items"]) == (200, [])
    r = await platform.http.get("/v1/imports", headers=caseworker)
    assert (r.status_code, r.json()["items"]) == (200, [])

    # A file larger than any other request, within the import limit, goes through.
    file = csv_file(rows=4, padding=limit // 4 + 1)
    assert limit < len(file) < INTAKE_LIMITS["max_import_bytes"]
    r = await platform.http.post("/v1/imports", content=file, headers=csv_head)
    assert r.status_code == 202, r.text
    location = r.headers["location"]

    async def imported() -> bool:
        found = await platform.http.get(location, headers=caseworker)
        return bool(found.json()["status"] == "completed")

    await eventually(imported, within=15)
    r = await platform.http.get(location, headers=caseworker)
    assert (r.json()["created"], r.json()["rejected"]) == (4, 0), r.json()["rejections"]


def csv_file(*, rows: int, padding: int) -> bytes:
    """A registry file of `rows` valid rows, each with an unknown column of `padding` bytes
    (reported and ignored), so the file is large while the import stays quick."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*COLUMNS, "remarks"])
    for i in range(rows):
        cells = dict.fromkeys(COLUMNS, "")
        cells.update(
            external_id=f"GOV-{i:05d}",
            given_name="Amina",
            family_name=f"Warsame{i}",
            sex="female",
            estimated_age="30",
            beneficiary_category="ex_combatant",
            programme_track="DDR",
            area="SO1101",
        )
        writer.writerow([*(cells[c] for c in COLUMNS), "z" * padding])
    return out.getvalue().encode()


async def test_deep_json_is_refused_quickly_and_never_parsed(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    caseworker = await platform.caseworker()
    admin = await platform.admin_headers()
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"name": ' + b'{"a": ' * 30_000 + b"1" + b"}" * 30_001
    for path, body, headers in (
        ("/v1/cases", deep, caseworker),
        ("/v1/cases", deep_object, caseworker),
        ("/v1/cases", deep, {}),  # refused before any token is checked
        ("/v1/organizations", deep, admin),
        ("/v1/services/import", deep, admin),
    ):
        started = time.monotonic()
        r = await platform.http.post(
            path, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        elapsed = time.monotonic() - started
        assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM_JSON), path
        problem = r.json()
        assert problem["type"] == "urn:icrs:problem:validation-error"
        assert problem["errors"] == [
            {"field": "body", "message": "nested too deeply", "code": "json_invalid"}
        ]
        assert elapsed < 1.0, (path, elapsed)
    # It is the limit that refuses, not the parser giving up: a little too deep is refused
    # as such, and within the limit the body is parsed and validated.
    depth = SERVICES["intake"].make_settings().max_json_depth
    r = await platform.http.post("/v1/cases", json={"person": nested(depth)}, headers=caseworker)
    assert r.status_code == 422
    assert r.json()["detail"] == f"the JSON body nests deeper than {depth} levels"
    r = await platform.http.post(
        "/v1/cases", json={**CASE, "person": nested(depth - 1)}, headers=caseworker
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["person"]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert "RecursionError" not in caplog.text
    # The connection was kept, and works.
    r = await platform.http.post("/v1/cases", json=CASE, headers=caseworker)
    assert r.status_code == 201, r.text


def nested(depth: int) -> Any:
    """Lists in lists, `depth` levels of them."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def test_slow_clients_get_408_while_the_others_are_answered(platform: Platform) -> None:
    caseworker = await platform.caseworker()
    timeout = INTAKE_LIMITS["body_timeout"]
    body = json.dumps(CASE).encode()
    head = request_head(
        "POST",
        "/v1/cases",
        {**caseworker, "Content-Type": "application/json", "Content-Length": str(len(body))},
    )

    async def slowloris() -> tuple[Reply, float, int, bool]:
        """Headers, then a byte of the body a second, until the server answers."""
        conn = await Connection.open(platform.port)
        started = time.monotonic()
        await conn.send(head)
        return await trickle(conn, body, started, within=timeout + 5, every=1.0)

    latencies: list[float] = []
    statuses: set[int] = set()

    async def others(until: asyncio.Future[Any]) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.port}") as http:
            while not until.done():
                for method, path, json_body in (
                    ("GET", "/v1/cases", None),
                    ("POST", "/v1/cases", {**CASE, "duplicates_checked": True}),
                    ("GET", "/healthz", None),
                ):
                    started = time.monotonic()
                    r = await http.request(method, path, json=json_body, headers=caseworker)
                    latencies.append(time.monotonic() - started)
                    statuses.add(r.status_code)
                await asyncio.sleep(0.05)

    slow = asyncio.gather(*(slowloris() for _ in range(20)))
    await asyncio.gather(slow, others(slow))

    for r, elapsed, sent, closed in slow.result():
        assert (r.status, r.headers["content-type"]) == (408, PROBLEM_JSON)
        assert r.json()["type"] == "urn:icrs:problem:request-timeout"
        assert timeout - 0.5 < elapsed < timeout + 1.5
        assert sent < len(body)
        assert closed
    assert len(latencies) >= 10
    assert statuses == {200, 201}
    assert max(latencies) < 1.0, sorted(latencies)[-5:]


async def test_slow_heads_get_408_while_the_others_are_answered(platform: Platform) -> None:
    """Connections that send their request line and headers a byte at a time, or nothing
    at all, are answered 408 and closed once the head's deadline has passed, on a first
    request and on a kept-alive connection's next; the other clients see no delay."""
    caseworker = await platform.caseworker()
    head = request_head("GET", "/v1/cases", caseworker)

    async def slow_head() -> tuple[Reply, float, int, bool]:
        conn = await Connection.open(platform.port)
        return await trickle(conn, head, time.monotonic(), within=HEAD_TIMEOUT + 5, every=0.25)

    async def silent() -> tuple[Reply, float, int, bool]:
        conn = await Connection.open(platform.port)
        started = time.monotonic()
        r = await conn.reply(within=HEAD_TIMEOUT + 5)
        elapsed = time.monotonic() - started
        closed = await conn.closed_by_server()
        conn.close()
        return r, elapsed, 0, closed

    async def slow_second_head() -> tuple[Reply, float, int, bool]:
        conn = await Connection.open(platform.port)
        await conn.send(head)
        first = await conn.reply()
        assert first.status == 200, first.body
        return await trickle(conn, head, time.monotonic(), within=HEAD_TIMEOUT + 5, every=0.25)

    latencies: list[float] = []
    statuses: set[int] = set()

    async def others(until: asyncio.Future[Any]) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.port}") as http:
            while not until.done():
                started = time.monotonic()
                r = await http.get("/v1/cases", headers=caseworker)
                latencies.append(time.monotonic() - started)
                statuses.add(r.status_code)
                await asyncio.sleep(0.05)

    slow = asyncio.gather(
        *(slow_head() for _ in range(15)),
        *(silent() for _ in range(5)),
        *(slow_second_head() for _ in range(5)),
    )
    await asyncio.gather(slow, others(slow))

    for r, elapsed, sent, closed in slow.result():
        assert (r.status, r.headers["content-type"]) == (408, PROBLEM_JSON)
        assert r.json()["type"] == "urn:icrs:problem:request-timeout"
        assert HEAD_TIMEOUT - 0.5 < elapsed < HEAD_TIMEOUT + 1.5, elapsed
        assert sent < len(head)
        assert closed
    assert len(latencies) >= 10
    assert statuses == {200}
    assert max(latencies) < 1.0, sorted(latencies)[-5:]


async def token_request(
    port: int,
    creds: dict[str, str],
    *,
    source: str = "127.0.0.1",
    forwarded_for: str | None = None,
) -> Reply:
    """A token request on a connection of its own, from the address `source`, with an
    `X-Forwarded-For` if given. (By hand: httpx's pool spends more time managing hundreds
    of connections than the server does answering them.)"""
    forwarded = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    basic = base64.b64encode(f"{creds['client_id']}:{creds['secret']}".encode()).decode()
    form = b"grant_type=client_credentials"
    conn = await Connection.open(port, source=source)
    try:
        await conn.send(
            request_head(
                "POST",
                "/oauth/token",
                {
                    "Authorization": f"Basic {basic}",
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Content-Length": str(len(form)),
                    **forwarded,
                },
            )
            + form
        )
        return await conn.reply(within=30)
    finally:
        conn.close()


async def test_a_flood_of_token_requests_does_not_shut_out_others(platform: Platform) -> None:
    flooder = await platform.client("Flooder", "government", CASEWORK)
    other = await platform.client("Bystander", "government", CASEWORK)
    flooder_token = await platform.token(**flooder)
    wrong = {**flooder, "secret": "not-" + flooder["secret"]}
    attempts = [wrong] * 200 + [flooder] * 100
    random.Random(7).shuffle(attempts)

    started = time.monotonic()
    flood = asyncio.gather(*(token_request(platform.port, c, source=FLOOD) for c in attempts))
    await asyncio.sleep(0.1)  # the flood is on
    during_flood = not flood.done()
    # Another client, from another address, still gets its token...
    other_wait = time.monotonic()
    issued = await token_request(platform.port, other, source="127.0.0.2")
    other_wait = time.monotonic() - other_wait
    # ...and the API keeps answering, the flooding client's token included.
    api_waits = []
    for token, path in (
        (issued.json()["access_token"], "/v1/cases"),
        (flooder_token, "/v1/services"),
    ):
        api_wait = time.monotonic()
        r = await platform.http.get(path, headers={"Authorization": f"Bearer {token}"})
        api_waits.append(time.monotonic() - api_wait)
        assert r.status_code == 200, r.text
    answers = await flood
    elapsed = time.monotonic() - started

    assert issued.status == 200
    assert during_flood
    statuses = [r.status for r in answers]
    assert set(statuses) <= {200, 401, 429}
    throttled = [r for r in answers if r.status == 429]
    assert len(throttled) >= len(attempts) // 2
    for r in throttled:
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"] == "slow_down"
    # The flooder got no more tokens than its burst and what its rate refilled meanwhile;
    # and the secrets checked (scrypt, the costly part) were a burst or two, not hundreds.
    burst, failures = PARTNERS_LIMITS["token_burst"], PARTNERS_LIMITS["token_failure_burst"]
    assert statuses.count(200) <= burst + elapsed
    assert statuses.count(200) + statuses.count(401) <= burst + failures + elapsed
    # Its secret is checked behind the flood's few in flight, not behind hundreds of them.
    assert other_wait < 10.0
    assert max(api_waits) < 1.0


async def failures_until_throttled(platform: Platform, creds: dict[str, str], **via: str) -> int:
    """Wrong secrets sent one after another until one gets 429; how many got 401 first."""
    wrong = {**creds, "secret": "not-" + creds["secret"]}
    for sent in range(100):
        r = await token_request(platform.port, wrong, **via)
        if r.status == 429:
            return sent
        assert r.status == 401, r.status
    raise AssertionError("never throttled")


async def test_behind_the_gateway_each_client_has_its_own_failure_limit(
    platform: Platform,
) -> None:
    flooder = await platform.client("Forwarded flooder", "government", CASEWORK)
    other = await platform.client("Forwarded bystander", "government", CASEWORK)
    burst = PARTNERS_LIMITS["token_failure_burst"]
    # Both come through the gateway (127.0.0.1), which says whom for.
    sent = await failures_until_throttled(platform, flooder, forwarded_for="10.9.0.1")
    assert burst <= sent <= burst + 2
    issued = await token_request(platform.port, other, forwarded_for="198.51.100.7, 10.9.0.2")
    assert issued.status == 200
    throttled = await token_request(platform.port, other, forwarded_for="10.9.0.1")
    assert throttled.status == 429


async def test_a_client_that_is_not_the_gateway_cannot_choose_its_address(
    platform: Platform,
) -> None:
    creds = await platform.client("Spoofer", "government", CASEWORK)
    burst = PARTNERS_LIMITS["token_failure_burst"]
    wrong = {**creds, "secret": "not-" + creds["secret"]}
    statuses = [
        (
            await token_request(
                platform.port, wrong, source="127.0.0.4", forwarded_for=f"10.8.0.{n}"
            )
        ).status
        for n in range(burst + 5)
    ]
    # Every request counted against 127.0.0.4, whatever it claimed.
    assert statuses[:burst] == [401] * burst
    assert statuses[-1] == 429
