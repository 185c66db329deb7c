"""Webhooks on the real broker and database, delivering to a real HTTP receiver that
checks every request with the `standardwebhooks` reference implementation."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from icrs_referral.app import SPEC
from icrs_referral.models import inbox_table
from icrs_referral.settings import ReferralSettings
from icrs_referral.webhooks import delivery, signing
from icrs_referral.webhooks.api import router as webhooks_router
from icrs_referral.webhooks.consumer import webhook_consumers
from icrs_referral.webhooks.state import start_webhooks, stop_webhooks
from icrs_shared.bus import RabbitBus
from icrs_shared.events import Envelope
from icrs_shared.events.catalog import ReferralEvent, ReferralUnmatched
from icrs_shared.inbox import Wanted
from icrs_shared.messaging import Consumers
from icrs_shared.runtime import ServiceSpec, build_app
from icrs_shared.testing import eventually, record
from icrs_shared.testing.tokens import TestIssuer

PROVIDER, REQUESTER, OTHER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
HANG = 0


# A receiver --------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A real HTTP server: each path verifies with the secret registered for it, then
    answers with the statuses scripted for it (200 once the script runs out; `HANG`
    answers only after a second)."""

    base_url: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: Request) -> Response:
        path = request.path_params["path"]
        body = await request.body()
        headers = dict(request.headers)
        try:
            Verifier(self.secrets[path]).verify(body, headers)
            verified = True
        except (KeyError, WebhookVerificationError):
            verified = False
        self.requests.append(Received(path, headers, body, verified))
        if not verified:
            return Response(status_code=401)
        script = self.scripts.get(path) or []
        status = script.pop(0) if script else 200
        if status == HANG:
            await asyncio.sleep(1.0)
            status = 200
        return Response(status_code=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver()
    app = Starlette(routes=[Route("/{path}", target.handle, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    target.base_url = f"http://127.0.0.1:{port}"
    try:
        yield target
    finally:
        server.should_exit = True
        await task


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# The service ---------------------------------------------------------------------------


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    issuer: TestIssuer
    bus: RabbitBus
    #: Event id -> whether the webhooks consumer wanted it, once it was asked.
    asked: dict[uuid.UUID, bool]

    def headers(self, org: uuid.UUID, *scopes: str) -> dict[str, str]:
        return self.issuer.headers(*(scopes or ("referrals:respond",)), organization_id=org)

    async def register(
        self, org: uuid.UUID, url: str, *, event_types: list[str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url, "description": "partner system"}
        if event_types is not None:
            body["event_types"] = event_types
        r = await self.client.post("/v1/webhooks", json=body, headers=self.headers(org))
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    async def deliveries(self, org: uuid.UUID, webhook_id: str) -> list[dict[str, Any]]:
        r = await self.client.get(
            f"/v1/webhooks/{webhook_id}/deliveries", headers=self.headers(org)
        )
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def webhook(self, org: uuid.UUID, webhook_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/v1/webhooks/{webhook_id}", headers=self.headers(org))
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found


def _with(items: tuple[Any, ...] | Any, extra: Any) -> tuple[Any, ...]:
    items = tuple(items)
    return items if any(i is extra for i in items) else (*items, extra)


def with_webhooks(spec: ServiceSpec, asked: dict[uuid.UUID, bool] | None = None) -> ServiceSpec:
    """The referral service with its webhooks, whether or not the app wires them yet; with
    `asked`, what the webhooks consumer answered when asked whether it wants an event."""
    ours = {item.name for item in webhook_consumers.items}
    consumers = Consumers()
    if spec.consumers is not None:
        consumers.items.extend(i for i in spec.consumers.items if i.name not in ours)
    for item in webhook_consumers.items:
        if asked is not None and item.wanted is not None:
            item = dataclasses.replace(item, wanted=_recorded(item.wanted, asked))
        consumers.items.append(item)
    return dataclasses.replace(
        spec,
        routers=_with(spec.routers, webhooks_router),
        consumers=consumers,
        on_start=_with(spec.on_start, start_webhooks),
        on_stop=_with(spec.on_stop, stop_webhooks),
    )


def _recorded(wanted: Wanted, asked: dict[uuid.UUID, bool]) -> Wanted:
    async def recording(session: AsyncSession, envelope: Envelope) -> bool:
        answer = await wanted(session, envelope)
        asked[envelope.id] = answer
        return answer

    return recording


@pytest.fixture
async def service(
    postgres_url: str,
    rabbit_bus: RabbitBus,
    issuer: TestIssuer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Service]:
    # Three attempts a few tenths of a second apart; disabled after two failed deliveries.
    monkeypatch.setattr(delivery, "RETRY_SCHEDULE", (0.1, 0.2))
    monkeypatch.setattr(delivery, "DISABLE_AFTER", 2)
    monkeypatch.setattr(delivery, "POLL_INTERVAL", 0.05)
    monkeypatch.setattr(delivery, "TIMEOUT", 5.0)
    settings = ReferralSettings(
        database_url=postgres_url, data_dir=tmp_path, public_url=issuer.issuer
    )
    asked: dict[uuid.UUID, bool] = {}
    app = build_app(with_webhooks(SPEC, asked), settings, rabbit_bus, jwks=issuer.jwks())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
            yield Service(app, client, issuer, rabbit_bus, asked)


async def handled(service: Service, event: Envelope) -> bool:
    """Whether the webhooks consumer has handled `event`."""
    query = select(func.count()).where(
        inbox_table.c.consumer == "webhooks", inbox_table.c.event_id == event.id
    )
    async with service.app.state.runtime.db.sessions() as session:
        return bool(await session.scalar(query))


def referral_event(
    verb: str = "created", *, provider: uuid.UUID = PROVIDER, requester: uuid.UUID = REQUESTER
) -> Envelope:
    data = ReferralEvent(
        referral_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        need_category="health",
        requester_organization_id=requester,
        organization_id=provider,
        service_id=uuid.uuid4(),
        status="requested",
    )
    return Envelope(
        source="/icrs/referral",
        type=f"icrs.referral.{verb}",
        subject=str(data.referral_id),
        data=data.model_dump(mode="json"),
    )


# Deliveries ------------------------------------------------------------------------------


async def test_an_event_reaches_the_provider_and_the_requester_signed(
    service: Service, receiver: Receiver
) -> None:
    provider = await service.register(PROVIDER, receiver.url("provider"))
    requester = await service.register(REQUESTER, receiver.url("requester"))
    other = await service.register(OTHER, receiver.url("other"))
    for hook, path in ((provider, "provider"), (requester, "requester"), (other, "other")):
        receiver.secrets[path] = hook["secret"]
    event = referral_event()

    await service.bus.publish([event])
    await eventually(lambda: len(receiver.at("provider")) == len(receiver.at("requester")) == 1)

    for path, hook in (("provider", provider), ("requester", requester)):
        [got] = receiver.at(path)
        assert got.verified
        assert got.payload == json.loads(event.to_json())
        assert got.headers["content-type"] == "application/json"
        owner = PROVIDER if path == "provider" else REQUESTER

        async def marked(owner: uuid.UUID = owner, hook_id: str = hook["id"]) -> bool:
            # The receiver has it before the sender has read its answer and marked it.
            [listed] = await service.deliveries(owner, hook_id)
            return bool(listed["status"] == "delivered")

        await eventually(marked)
        [listed] = await service.deliveries(owner, hook["id"])
        assert got.headers["webhook-id"] == listed["id"]
        assert listed["event_id"] == str(event.id)
        assert listed["event_type"] == "referral.created"
        assert (listed["status"], listed["attempts"], listed["last_status_code"]) == (
            "delivered",
            1,
            200,
        )
        assert listed["delivered_at"] is not None
        assert listed["next_attempt_at"] is None
    # Another organization's referral is none of its webhooks' business.
    assert receiver.at("other") == []
    assert await service.deliveries(OTHER, other["id"]) == []


async def test_a_webhook_gets_only_the_event_types_it_asked_for(
    service: Service, receiver: Receiver
) -> None:
    hook = await service.register(
        REQUESTER, receiver.url("some"), event_types=["referral.accepted", "referral.unmatched"]
    )
    receiver.secrets["some"] = hook["secret"]
    assert hook["event_types"] == ["referral.accepted", "referral.unmatched"]
    unmatched = Envelope(
        source="/icrs/referral",
        type="icrs.referral.unmatched",
        data=ReferralUnmatched(
            case_id=uuid.uuid4(),
            need_category="legal",
            requester_organization_id=REQUESTER,
            reasons=["no-service-in-area"],
        ).model_dump(mode="json"),
    )
    created = referral_event("created")
    events = [created, referral_event("accepted"), unmatched]

    for event in events:  # one after another: the consumer handles events concurrently
        await service.bus.publish([event])
        await eventually(lambda e=event: e.id in service.asked)
        if service.asked[event.id]:
            await eventually(lambda e=event: handled(service, e))
    await eventually(lambda: len(receiver.at("some")) == 2)

    got = {r.payload["type"] for r in receiver.at("some")}
    assert got == {"icrs.referral.accepted", "icrs.referral.unmatched"}
    # The event no webhook wanted was acked with nothing written, not even an inbox row.
    assert service.asked[created.id] is False
    assert not await handled(service, created)
    # Newest first, a page at a time.
    r = await service.client.get(
        f"/v1/webhooks/{hook['id']}/deliveries",
        params={"limit": 1},
        headers=service.headers(REQUESTER),
    )
    first = r.json()
    assert first["items"][0]["event_type"] == "referral.unmatched"
    r = await service.client.get(
        f"/v1/webhooks/{hook['id']}/deliveries",
        params={"limit": 1, "cursor": first["next_cursor"]},
        headers=service.headers(REQUESTER),
    )
    second = r.json()
    assert second["items"][0]["event_type"] == "referral.accepted"
    assert second["next_cursor"] is None


async def test_a_failing_receiver_gets_the_delivery_on_a_later_attempt(
    service: Service, receiver: Receiver
) -> None:
    hook = await service.register(PROVIDER, receiver.url("flaky"))
    receiver.secrets["flaky"] = hook["secret"]
    receiver.scripts["flaky"] = [500, 500]

    await service.bus.publish([referral_event()])
    await eventually(lambda: len(receiver.at("flaky")) == 3)

    async def delivered() -> bool:
        [listed] = await service.deliveries(PROVIDER, hook["id"])
        return bool(listed["status"] == "delivered")

    await eventually(delivered)
    [listed] = await service.deliveries(PROVIDER, hook["id"])
    assert (listed["attempts"], listed["last_status_code"]) == (3, 200)
    requests = receiver.at("flaky")
    assert all(r.verified for r in requests)
    # Every attempt carries the same message id, signed anew.
    assert {r.headers["webhook-id"] for r in requests} == {listed["id"]}
    r = await service.client.get(
        f"/v1/webhooks/{hook['id']}/deliveries/{listed['id']}", headers=service.headers(PROVIDER)
    )
    assert r.status_code == 200, r.text
    history = r.json()["history"]
    assert [(a["number"], a["status_code"], a["error"]) for a in history] == [
        (1, 500, None),
        (2, 500, None),
        (3, 200, None),
    ]
    assert all(a["duration_ms"] >= 0 for a in history)
    assert (await service.webhook(PROVIDER, hook["id"]))["consecutive_failures"] == 0


async def test_an_answer_too_late_counts_as_a_failed_attempt(
    service: Service, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "TIMEOUT", 0.3)
    hook = await service.register(PROVIDER, receiver.url("slow"))
    receiver.secrets["slow"] = hook["secret"]
    receiver.scripts["slow"] = [HANG]

    await service.bus.publish([referral_event()])

    async def delivered() -> bool:
        listed = await service.deliveries(PROVIDER, hook["id"])
        return bool(listed) and listed[0]["status"] == "delivered"

    await eventually(delivered)
    [listed] = await service.deliveries(PROVIDER, hook["id"])
    r = await service.client.get(
        f"/v1/webhooks/{hook['id']}/deliveries/{listed['id']}", headers=service.headers(PROVIDER)
    )
    history = r.json()["history"]
    assert [(a["status_code"], a["error"]) for a in history] == [(None, "Timeout"), (200, None)]
    assert 250 <= history[0]["duration_ms"] < 1000


async def test_a_receiver_that_stays_down_fails_deliveries_then_is_disabled(
    service: Service, receiver: Receiver
) -> None:
    failures = await record(service.bus, ["webhook.*"])
    hook = await service.register(PROVIDER, f"http://127.0.0.1:{closed_port()}/hook")
    first, second = referral_event(), referral_event()

    await service.bus.publish([first])
    await failures.wait_for(1)
    await service.bus.publish([second])
    await failures.wait_for(2)

    events = failures.of_type("icrs.webhook.delivery_failed")
    assert [e.data["disabled"] for e in events] == [False, True]
    assert {e.data["event_id"] for e in events} == {str(first.id), str(second.id)}
    assert all(e.data["webhook_id"] == hook["id"] for e in events)
    assert all(e.data["organization_id"] == str(PROVIDER) for e in events)
    assert all(e.data["attempts"] == 3 for e in events)
    listed = await service.deliveries(PROVIDER, hook["id"])
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in listed] == [
        ("failed", 3, None),
        ("failed", 3, None),
    ]
    assert {d["last_error"] for d in listed} == {"ConnectError"}
    disabled = await service.webhook(PROVIDER, hook["id"])
    assert (disabled["enabled"], disabled["consecutive_failures"]) == (False, 2)
    assert disabled["disabled_at"] is not None

    # A disabled webhook gets no new deliveries, until it is enabled again.
    third = referral_event()
    await service.bus.publish([third])
    await eventually(lambda: third.id in service.asked)
    assert service.asked[third.id] is False
    assert len(await service.deliveries(PROVIDER, hook["id"])) == 2
    r = await service.client.post(
        f"/v1/webhooks/{hook['id']}/enable", headers=service.headers(PROVIDER)
    )
    assert r.status_code == 200, r.text
    assert (r.json()["enabled"], r.json()["consecutive_failures"]) == (True, 0)
    assert r.json()["disabled_at"] is None


# Registration ---------------------------------------------------------------------------


async def test_the_secret_is_shown_once(service: Service, receiver: Receiver) -> None:
    headers = {**service.headers(PROVIDER), "Idempotency-Key": "register-1"}
    body = {"url": receiver.url("once")}
    r = await service.client.post("/v1/webhooks", json=body, headers=headers)
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["location"] == f"/v1/webhooks/{created['id']}"
    assert created["event_types"] == ["referral.*"]
    assert created["enabled"] is True

    replay = await service.client.post("/v1/webhooks", json=body, headers=headers)
    assert replay.status_code == 409
    assert replay.json()["webhook_id"] == created["id"]
    assert replay.headers["content-type"] == "application/problem+json"

    one = await service.client.get(f"/v1/webhooks/{created['id']}", headers=headers)
    listed = await service.client.get("/v1/webhooks", headers=headers)
    for answer in (one, listed, replay):
        assert '"secret"' not in answer.text
        assert secret.removeprefix("whsec_") not in answer.text
    assert [w["id"] for w in listed.json()["items"]] == [created["id"]]


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("https://partner.example/hooks", 201),
        ("http://127.0.0.1:9/hooks", 201),
        ("http://localhost/hooks", 201),
        ("http://[::1]:8080/hooks", 201),
        ("http://partner.example/hooks", 422),
        ("http://10.0.0.5/hooks", 422),
        ("https://user:pass@partner.example/hooks", 422),
        ("ftp://partner.example/hooks", 422),
        ("not a url", 422),
    ],
)
async def test_urls_must_be_https_but_for_this_machine(
    service: Service, url: str, status: int
) -> None:
    r = await service.client.post(
        "/v1/webhooks", json={"url": url}, headers=service.headers(PROVIDER)
    )
    assert r.status_code == status, r.text
    if status == 422:
        assert r.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in r.json()["errors"]] == ["url"]
        assert url not in r.text


async def test_event_types_must_be_referral_events(service: Service) -> None:
    r = await service.client.post(
        "/v1/webhooks",
        json={"url": "https://partner.example/", "event_types": ["case.registered"]},
        headers=service.headers(PROVIDER),
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["event_types"]


async def test_a_description_is_one_line_of_visible_text(service: Service) -> None:
    """Found by schemathesis: PostgreSQL refuses NUL in text, and this answered 500."""
    for description in ("a\x00b", "line\nbreak", "\u202eevil", " "):
        r = await service.client.post(
            "/v1/webhooks",
            json={"url": "https://partner.example/", "description": description},
            headers=service.headers(PROVIDER),
        )
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["description"]


async def test_scopes_and_organizations(service: Service) -> None:
    r = await service.client.get("/v1/webhooks")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await service.client.get("/v1/webhooks", headers=service.headers(PROVIDER, "cases:read"))
    assert r.status_code == 403
    assert "insufficient_scope" in r.headers["www-authenticate"]
    r = await service.client.get(
        "/v1/webhooks", headers=service.issuer.headers("referrals:read")
    )  # a token of no organization
    assert r.status_code == 403

    reader = service.headers(REQUESTER, "referrals:read")
    r = await service.client.post(
        "/v1/webhooks", json={"url": "https://requester.example/"}, headers=reader
    )
    assert r.status_code == 201, r.text
    hook = r.json()["id"]

    stranger = service.headers(OTHER, "referrals:read", "referrals:respond")
    for method, path in [
        ("GET", f"/v1/webhooks/{hook}"),
        ("GET", f"/v1/webhooks/{hook}/deliveries"),
        ("GET", f"/v1/webhooks/{hook}/deliveries/{uuid.uuid4()}"),
        ("POST", f"/v1/webhooks/{hook}/enable"),
        ("DELETE", f"/v1/webhooks/{hook}"),
    ]:
        r = await service.client.request(method, path, headers=stranger)
        assert r.status_code == 404, (method, path)
    r = await service.client.get("/v1/webhooks", headers=stranger)
    assert r.json()["items"] == []

    r = await service.client.delete(f"/v1/webhooks/{hook}", headers=reader)
    assert r.status_code == 204
    r = await service.client.get(f"/v1/webhooks/{hook}", headers=reader)
    assert r.status_code == 404


# Signing ---------------------------------------------------------------------------------


def test_signatures_verify_with_the_reference_implementation() -> None:
    secret = signing.new_secret()
    body = b'{"specversion":"1.0","id":"x"}'
    timestamp = 1_900_000_000
    headers = signing.headers(secret=secret, msg_id="msg_1", timestamp=timestamp, body=body)
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    expected = Verifier(secret).sign("msg_1", when, body.decode())
    assert headers["webhook-signature"] == expected
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(timestamp)


def test_retries_wait_longer_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "RETRY_SCHEDULE", (5.0, 30.0, 120.0))
    assert delivery.max_attempts() == 4
    for failed, base in [(1, 5.0), (2, 30.0), (3, 120.0), (9, 120.0)]:
        for _ in range(20):
            wait = delivery.retry_delay(failed)
            assert base * (1 - delivery.JITTER) <= wait <= base * (1 + delivery.JITTER)
