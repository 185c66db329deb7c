"""Schemathesis against every service's OpenAPI document, on the real database and broker.

The four services run together, as in production, each on its own PostgreSQL database and
all on one RabbitMQ namespace, so that events flow: a case's need is routed to a service,
the referral reaches intake's referral view, and the audit log fills. Before the fuzzing,
one organization of each side, a case with consent and a need, its referral, a webhook and
its deliveries are made; path parameters name them, so valid requests reach the handlers'
logic instead of stopping at 404. Every request to a protected operation carries a valid
token with every scope and that organization.

Each service is served by uvicorn in the test's event loop (its engines and bus belong to
that loop), and schemathesis, which is synchronous, calls it over HTTP from a thread.

What must hold for every generated request, valid or not: no 5xx; the status code, content
type, headers and body are the documented ones; invalid input is refused with a 4xx; every
4xx is RFC 9457 `application/problem+json` in the project's shape (the token endpoint's are
RFC 6749 errors, which carry the same members).

Each operation gets MAX_EXAMPLES valid requests, with the path naming what was made (and
`If-Match: *`, so that updates get past their precondition), then MAX_EXAMPLES invalid
ones. Hypothesis is derandomized: CI sends the same requests on every run.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import pytest_asyncio
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from icrs.services import SERVICES
from icrs_partners.scopes import ALL_SCOPES
from icrs_shared.bus import RabbitBus
from icrs_shared.errors import PROBLEM_BASE, PROBLEM_JSON
from icrs_shared.testing import eventually
from icrs_shared.testing.databases import create_database, drop_database
from icrs_shared.testing.tokens import TestIssuer

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # Schemathesis's own strategies for invalid data use `random`; Hypothesis frowns on it.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

#: Generated requests per operation and generation mode (valid, invalid).
MAX_EXAMPLES = 12

SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same requests on every run, so that CI is repeatable
    database=None,
    # Requests drawn from large schemas are slow to generate and filtered by nature.
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@dataclass
class Platform:
    issuer: TestIssuer
    base_urls: dict[str, str] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Values for path parameters, by name: ids of things that exist.
    known: dict[str, str] = field(default_factory=dict)
    token: str = ""

    def client(self, name: str, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.AsyncClient(base_url=self.base_urls[name], headers=headers, timeout=30)


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    amqp_url: str, postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    issuer = TestIssuer()
    running = Platform(issuer)
    data_dir = tmp_path_factory.mktemp("schemathesis")
    with pytest.MonkeyPatch.context() as env:
        # Fuzzed webhook URLs name hosts anywhere: their deliveries go to a proxy that is
        # not there, never out of this machine.
        env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
        env.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        bus = RabbitBus(amqp_url, namespace=f"test-{uuid.uuid4().hex[:10]}.", delivery_limit=3)
        await bus.start()
        async with AsyncExitStack() as stack:
            stack.push_async_callback(bus.close)
            stack.push_async_callback(bus.delete_topology)
            for name, entry in SERVICES.items():
                url = await create_database(postgres_server_url)
                stack.push_async_callback(drop_database, url)
                settings = entry.make_settings(
                    database_url=url,
                    data_dir=data_dir / name,
                    public_url=issuer.issuer,
                    # Fuzzing sends many bad token requests from one address; the limiter
                    # has tests of its own, and would answer most of them 429.
                    token_failure_burst=1_000_000,
                    audit_checkpoint_interval=0.2,
                )
                app = entry.create_app(settings, bus, jwks=issuer.jwks())
                await stack.enter_async_context(app.router.lifespan_context(app))
                running.base_urls[name] = await stack.enter_async_context(served(app))
                running.documents[name] = app.openapi()
            await _seed(running)
            yield running


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """The app served by uvicorn on a free local port, in this loop; its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (201, 202), response.text
    body: dict[str, Any] = response.json()
    return body


async def _seed(platform: Platform) -> None:
    """Two organizations (one that holds the cases and receives their referrals, one for
    the partners routes to change), a case with consent and a need, its referral, an
    import, a webhook and a delivery; `platform.known` names them."""
    known = platform.known
    admin = platform.issuer.token(*sorted(ALL_SCOPES), organization_id=uuid.uuid4())
    async with platform.client("partners", admin) as partners:
        organizations = {}
        for name, kind in (("home", "ngo"), ("target", "service_provider")):
            org = await _created(
                await partners.post(
                    "/v1/organizations",
                    json={"name": f"Fuzzing {name}", "kind": kind, "country": "SO"},
                )
            )
            r = await partners.post(
                f"/v1/organizations/{org['id']}/verify", json={"child_safeguarding": True}
            )
            assert r.status_code == 200, r.text
            organizations[name] = org["id"]
        for name, category in (("home", "health"), ("target", "legal")):
            service = await _created(
                await partners.post(
                    f"/v1/organizations/{organizations[name]}/services",
                    json={
                        "name": f"{name} service",
                        "category": category,
                        "languages": ["so"],
                        "service_areas": ["SO"],
                        "eligibility": {"accepts_minors": True},
                        "capacity": {"maximum": 1000, "accepting": True},
                    },
                )
            )
        known["organization_id"] = organizations["target"]
        known["service_id"] = service["id"]
        client = await _created(
            await partners.post(
                f"/v1/organizations/{organizations['target']}/clients",
                json={"name": "fuzzing", "scopes": ["partners:read"]},
            )
        )
        known["client_id"] = client["client_id"]

    platform.token = platform.issuer.token(
        *sorted(ALL_SCOPES), organization_id=organizations["home"], lifetime=3600
    )
    async with platform.client("referral") as referral:
        webhook = await _created(
            await referral.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{closed_port()}/"})
        )
        known["webhook_id"] = webhook["id"]

    async with platform.client("intake") as intake:
        case = await _created(
            await intake.post(
                "/v1/cases",
                json={
                    "person": {
                        "given_name": "Hodan",
                        "family_name": "Abdi",
                        "sex": "female",
                        "date_of_birth": "1996-05-02",
                        "languages": ["so"],
                        "documents": [{"type": "ddr_id", "number": "DDR-7788"}],
                    },
                    "beneficiary_category": "ex_combatant",
                    "programme_track": "DDR",
                    "area": "SO1101",
                },
            )
        )
        known["case_id"] = case["id"]
        consent = await _created(
            await intake.post(
                f"/v1/cases/{case['id']}/consents",
                json={
                    "purposes": ["referral", "follow_up"],
                    "recipients": {"categories": ["health"], "organizations": []},
                    "given_by": "self",
                },
            )
        )
        known["consent_id"] = consent["id"]
        assessment = await _created(
            await intake.post(
                f"/v1/cases/{case['id']}/assessments",
                json={"needs": [{"category": "health", "priority": "urgent", "note": "Fever"}]},
            )
        )
        known["assessment_id"] = assessment["id"]
        imported = await _created(
            await intake.post(
                "/v1/imports",
                content=(
                    "external_id,given_name,family_name,sex,date_of_birth,"
                    "beneficiary_category,programme_track,area\n"
                    "GOV-1,Amina,Yusuf,female,1990-01-01,ex_combatant,DDR,SO1101\n"
                ),
                headers={"Content-Type": "text/csv"},
            )
        )
        known["import_id"] = imported["id"]

    async with (
        platform.client("referral") as referral,
        platform.client("intake") as intake,
        platform.client("audit") as audit,
    ):

        async def routed() -> bool:
            items = (await referral.get("/v1/referrals/inbox")).json()["items"]
            if items:
                known["referral_id"] = items[0]["id"]
            return bool(items)

        async def delivered() -> bool:
            path = f"/v1/webhooks/{webhook['id']}/deliveries"
            items = (await referral.get(path)).json()["items"]
            if items:
                known["delivery_id"] = items[0]["id"]
            return bool(items)

        async def viewable() -> bool:
            path = f"/v1/cases/{case['id']}/referral-view"
            return (await intake.get(path)).status_code == 200

        async def logged() -> bool:
            return (await audit.get("/v1/log/checkpoint")).status_code == 200

        for ready in (routed, delivered, viewable, logged):
            await eventually(ready, within=30)
        known["index"] = "0"


#: The token endpoint answers its errors as RFC 6749 §5.2 says, in `application/json` with
#: `error` and `error_description`, which OAuth clients read; the body also has the RFC 9457
#: members every ICRS error has.
OAUTH_TOKEN = ("POST", "/oauth/token")


def problem_details(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every error answers RFC 9457 problem details, in the project's shape."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    media_type = content_type.split(";")[0].strip()
    body = response.json()
    if (case.method.upper(), case.path) == OAUTH_TOKEN and media_type == "application/json":
        assert isinstance(body, dict), "an OAuth error is a JSON object"
        assert isinstance(body.get("error"), str), "an OAuth error has `error`"
    else:
        assert media_type == PROBLEM_JSON, (
            f"{response.status_code} answered {content_type!r}, not {PROBLEM_JSON}"
        )
    assert isinstance(body, dict), "a problem is a JSON object"
    assert body.get("status") == response.status_code, "`status` is the response's status"
    assert isinstance(body.get("title"), str), "`title` is a string"
    assert body["title"], "`title` is set"
    kind = body.get("type")
    assert kind == "about:blank" or (isinstance(kind, str) and kind.startswith(PROBLEM_BASE)), (
        f"`type` {kind!r} is neither about:blank nor one of ours"
    )
    assert isinstance(body.get("detail", ""), str), "`detail` is a string"
    if "errors" in body:
        assert isinstance(body["errors"], list), "`errors` lists fields"
        assert body["errors"], "`errors` is left out when there are none"
        for error in body["errors"]:
            assert isinstance(error, dict), "a field error is an object"
            assert set(error) == {"field", "message", "code"}, "a field error's members"
            assert all(isinstance(v, str) for v in error.values()), "a field error's values"
    return None


#: Schemathesis's checks that fit. Left out: `positive_data_acceptance` (a valid request
#: about something that does not exist, or not in that state, rightly answers 404, 409 or
#: 428); `ignored_auth` (tests/security/test_authorization_matrix.py covers every route);
#: `use_after_free` and `ensure_resource_availability` (they need the stateful phase, and
#: the documents declare no links); `max_response_time` (timing on shared CI is noise).
CHECKS: list[Callable[..., bool | None]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    problem_details,
]


def fuzz(operation: APIOperation, platform: Platform, base_url: str) -> list[str]:
    """Schemathesis's requests to one operation: valid ones about things that exist, then
    invalid ones; what failed, if anything."""
    token = {"Authorization": f"Bearer {platform.token}"}
    protected = bool(operation.definition.raw.get("security"))
    names = [p.name for p in operation.iter_parameters() if p.location == "path"]
    known = {name: platform.known[name] for name in names if name in platform.known}
    # `If-Match: *` lets valid updates past their precondition (its absence is tested
    # with every service's updates) into the handler's logic.
    passes = [
        (
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known),
            {**token, "If-Match": "*"} if protected else {},
        )
    ]
    if list(operation.iter_parameters()) or operation.body:  # else nothing can be invalid
        passes.append((operation.as_strategy(GenerationMode.NEGATIVE), token if protected else {}))
    failures = []
    with requests.Session() as session:
        for strategy, headers in passes:

            @hypothesis.given(case=strategy)
            @SETTINGS
            def call(case: Case) -> None:
                case.call_and_validate(
                    base_url=base_url,
                    session=session,
                    headers=headers,  # noqa: B023 - called before the loop moves on
                    checks=CHECKS,
                )

            try:
                call()
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label}: {exc}")
    return failures


def _order(operation: APIOperation) -> bool:
    # Deletions last, so that the operations before them meet the things they delete.
    return operation.method.upper() == "DELETE"


@pytest.mark.parametrize("name", list(SERVICES))
async def test_every_operation_conforms(platform: Platform, name: str) -> None:
    schema = schemathesis.openapi.from_dict(platform.documents[name], config=schemathesis.Config())
    # The token goes in every protected request; a generated one would only be refused.
    schema.config.generation.update(with_security_parameters=False)
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=_order)
    failures: list[str] = []
    for operation in operations:
        failures += await asyncio.to_thread(fuzz, operation, platform, platform.base_urls[name])
    assert operations
    assert not failures, "\n\n".join(failures)
