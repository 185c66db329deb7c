"""Personal data never lies in clear where it can be read: not in any row of the
database, not in any event, not in the logs, not in the SQLite file of the embedded
default; and once a case is erased it cannot be recovered, even with the master keys."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from icrs_intake.app import create_app
from icrs_intake.cases import profile as profiles
from icrs_intake.crypto import KeyringError, unseal_json
from icrs_intake.models import Case, CaseIndex, CaseKey, Need, Plan
from icrs_intake.needs import service as needs
from icrs_intake.plans import service as plans
from icrs_intake.settings import IntakeSettings
from icrs_intake.state import keyring_of
from icrs_shared.bus import InProcessBus
from icrs_shared.events import Envelope
from icrs_shared.logs import JsonFormatter
from icrs_shared.runtime import Runtime
from icrs_shared.testing import eventually
from icrs_shared.testing.tokens import TestIssuer

if TYPE_CHECKING:
    from conftest import Intake

PERSON: dict[str, Any] = {
    "given_name": "Zephyrine",
    "family_name": "Quillfeather",
    "aliases": ["Marmaduke Xylander", "Ñúñez-Çelik"],
    "sex": "female",
    "date_of_birth": "1987-11-23",
    "languages": ["so", "ar"],
    "contact": {
        "phone": "+252 61 7654321",
        "email": "zephy.quill@example.org",
        "address": "17 Tamarind Lane, Hodan",
    },
    "documents": [
        {"type": "passport", "number": "PZX-99417"},
        {"type": "national_id", "number": "NID 5583 2019"},
    ],
}
NOTE = "Recurring migraines after the quarry collapse"
PLAN = "Apprenticeship at the Wadajir bicycle workshop"
RENAMED = "Quillfeather-Osei"

#: Every personal value sent, and the forms it could be stored or logged in.
PERSONAL = [
    "Zephyrine",
    "Quillfeather",
    RENAMED,
    "Marmaduke Xylander",
    "Xylander",
    "Ñúñez-Çelik",
    "1987-11-23",
    "19871123",
    "+252 61 7654321",
    "252617654321",
    "zephy.quill@example.org",
    "17 Tamarind Lane, Hodan",
    "Tamarind",
    "PZX-99417",
    "PZX99417",
    "NID 5583 2019",
    "NID55832019",
    NOTE,
    "quarry collapse",
    PLAN,
    "Wadajir bicycle",
]


def case_body(**changes: Any) -> dict[str, Any]:
    return {
        "person": PERSON,
        "beneficiary_category": "ex_combatant",
        "programme_track": "DDR",
        "area": "SO1101",
        "demobilization_date": "2025-06-30",
        "vulnerabilities": ["disability"],
        **changes,
    }


# Looking for the values ----------------------------------------------------------------


def _base64_cores(raw: bytes) -> set[str]:
    """What base64 of `raw` shows at any offset inside longer encoded data: the groups
    of four characters that encode `raw`'s bytes only (too short a core would match by
    chance)."""
    cores = set()
    for offset in range(3):
        full_groups = (offset + len(raw)) // 3
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode()
            core = encoded[4 if offset else 0 : full_groups * 4]
            if len(core) >= 8:
                cores.add(core)
    return cores


def text_forms(value: str) -> tuple[set[str], set[str]]:
    """(forms to find case-insensitively, forms to find exactly)."""
    raw = value.encode()
    folded = {value.lower(), raw.hex(), value.lower().encode().hex()}
    return folded, _base64_cores(raw)


def assert_no_personal_text(corpus: str, where: str) -> None:
    lowered = corpus.lower()
    for value in PERSONAL:
        folded, exact = text_forms(value)
        for form in folded:
            assert form not in lowered, f"{value!r} found in {where} (as {form!r})"
        for form in exact:
            assert form not in corpus, f"{value!r} found in {where} (as base64 {form!r})"


def assert_no_personal_bytes(raw: bytes, where: str) -> None:
    for value in PERSONAL:
        for variant in {value, value.lower(), value.upper()}:
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                needle = variant.encode(encoding)
                assert needle not in raw, f"{value!r} found in {where} ({encoding})"


async def table_rows(engine: AsyncEngine) -> dict[str, list[str]]:
    """Every row of every table, as text (bytes as \\x and hex, as PostgreSQL shows them)."""
    out: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        quote = engine.dialect.identifier_preparer.quote
        if engine.dialect.name == "postgresql":
            names = await conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                )
            )
            for (name,) in names.all():
                rows = await conn.execute(text(f"SELECT t::text FROM {quote(name)} t"))
                out[name] = [row for (row,) in rows.all()]
        else:
            names = await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            for (name,) in names.all():
                rows = await conn.execute(text(f"SELECT * FROM {quote(name)}"))
                out[name] = [" ".join(_cell(v) for v in row) for row in rows.all()]
    assert {"cases", "case_keys", "case_index", "needs", "plans", "outbox"} <= set(out)
    return out


def _cell(value: object) -> str:
    return "\\x" + value.hex() if isinstance(value, bytes) else str(value)


def database_files(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data_dir.glob("intake.db*"))}


@pytest.mark.parametrize("value", PERSONAL)
def test_the_search_finds_every_form(value: str) -> None:
    raw = value.encode()
    texts = [
        f"x{value}y",
        value.upper(),
        "\\x00" + raw.hex(),
        *(base64.b64encode(b"\x07" * n + raw + b"\x08" * 5).decode() for n in range(3)),
        *(base64.urlsafe_b64encode(b"\xfb" * n + raw).decode() for n in range(3)),
    ]
    for corpus in texts:
        with pytest.raises(AssertionError):
            assert_no_personal_text(corpus, "a test corpus")
    for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
        with pytest.raises(AssertionError):
            assert_no_personal_bytes(b"\x00" + value.upper().encode(encoding), "a test file")


# Driving the service ------------------------------------------------------------------


@dataclass
class Service:
    """The intake app as a test drives it, on either database and bus."""

    app: FastAPI
    client: httpx.AsyncClient
    headers: dict[str, str]
    events: list[Envelope] = field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def register(self, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        r = await self.client.post("/v1/cases", json=body, headers={**self.headers, **headers})
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    async def record(self, envelope: Envelope) -> None:
        self.events.append(envelope)


async def add_note(service: Service, case_id: str, note: str) -> None:
    need = {"category": "health", "priority": "normal", "note": note, "share_note": True}
    r = await service.client.post(
        f"/v1/cases/{case_id}/assessments", json={"needs": [need]}, headers=service.headers
    )
    assert r.status_code == 201, r.text


async def set_goals(service: Service, case_id: str, goals: str) -> None:
    path = f"/v1/cases/{case_id}/plan"
    r = await service.client.get(path, headers=service.headers)
    assert r.status_code == 200, r.text
    headers = {**service.headers, "If-Match": r.headers["etag"]}
    r = await service.client.put(path, json={"goals": goals}, headers=headers)
    assert r.status_code == 200, r.text


async def use_the_case(service: Service, created: dict[str, Any]) -> None:
    """What a caseworker does with a case: every path that touches personal data."""
    path = f"/v1/cases/{created['id']}"
    # A probable duplicate (decrypts the candidates), and a rejected body.
    r = await service.client.post("/v1/cases", json=case_body(), headers=service.headers)
    assert r.status_code == 409, r.text
    bad = case_body(person={**PERSON, "sex": "Zephyrine"})
    r = await service.client.post("/v1/cases", json=bad, headers=service.headers)
    assert r.status_code == 422
    await add_note(service, created["id"], NOTE)
    await set_goals(service, created["id"], PLAN)
    r = await service.client.get(path, headers=service.headers)
    assert r.json()["person"]["given_name"] == "Zephyrine"
    for name in ("Zephyrine", "marmaduke xylander", "Ñúñez"):
        r = await service.client.get("/v1/cases", params={"name": name}, headers=service.headers)
        assert [c["id"] for c in r.json()["items"]] == [created["id"]], name
    patch = {"person": {"family_name": RENAMED}}
    r = await service.client.patch(
        path, json=patch, headers={**service.headers, "If-Match": f'"{created["id"]}.1"'}
    )
    assert r.status_code == 200, r.text


async def all_published(service: Service, engine: AsyncEngine) -> None:
    async def done() -> bool:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT sent_at FROM outbox"))).all()
        return all(sent is not None for (sent,) in rows) and len(service.events) >= len(rows)

    await eventually(done, within=15)


def service_logs(records: Iterable[logging.LogRecord]) -> str:
    """The service's log output, as its formatter writes it, and every record's fields."""
    formatter = JsonFormatter(service="intake")
    lines = []
    for record in records:
        lines.append(formatter.format(record))
        lines.append(repr(vars(record)))
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(lines)


@pytest.fixture
def service(intake: Intake) -> Service:
    return Service(intake.app, intake.client, intake.caseworker)


@asynccontextmanager
async def embedded_service(data_dir: Path, issuer: TestIssuer) -> AsyncIterator[Service]:
    """The embedded default: a SQLite file under `data_dir` and the in-process bus."""
    settings = IntakeSettings(data_dir=data_dir, database_url=None, public_url=issuer.issuer)
    bus = InProcessBus()
    await bus.start()
    app = create_app(settings, bus, jwks=issuer.jwks())
    org = uuid.uuid4()
    headers = issuer.headers("cases:write", "cases:read", organization_id=org, client_id="cw")
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                service = Service(app, client, headers)
                await bus.subscribe("test", "recorder", ["#"], service.record)
                yield service
    finally:
        await bus.close()


@pytest.fixture
async def embedded(tmp_path: Path, issuer: TestIssuer) -> AsyncIterator[Service]:
    async with embedded_service(tmp_path, issuer) as service:
        yield service


# (a) PostgreSQL, RabbitMQ, logs ------------------------------------------------------------


async def test_no_personal_data_in_rows_events_or_logs(
    intake: Intake, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    # The test's own HTTP client logs every URL it calls, query string and all; the
    # service's process quiets these loggers (icrs_shared.logs.configure_logging).
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.WARNING, logger=name)
    caplog.set_level(logging.DEBUG)  # last: it sets the capturing handler's level too
    recorder = await intake.record("#")
    created = await service.register(case_body(), **{"Idempotency-Key": "privacy-1"})
    await use_the_case(service, created)
    engine = service.runtime.db.engine
    service.events = recorder.events
    await all_published(service, engine)

    rows = await table_rows(engine)
    for table in ("cases", "case_keys", "case_index", "needs", "plans", "outbox"):
        assert rows[table], f"nothing in {table}"
    for table, texts in rows.items():
        assert_no_personal_text("\n".join(texts), f"table {table}")

    types = {e.type for e in recorder.events}
    assert {"icrs.case.registered", "icrs.case.updated", "icrs.needs.assessed"} <= types
    for event in recorder.events:
        assert_no_personal_text(event.to_json().decode(), f"event {event.type}")

    assert any(r.name == "icrs.access" for r in caplog.records), "nothing was logged"
    assert_no_personal_text(service_logs(caplog.records), "the logs")
    assert_no_personal_text(caplog.text, "the logs")


# (b) The embedded default --------------------------------------------------------------


async def test_no_personal_data_in_the_sqlite_file(embedded: Service, tmp_path: Path) -> None:
    created = await embedded.register(case_body())
    await use_the_case(embedded, created)
    await all_published(embedded, embedded.runtime.db.engine)

    files = database_files(tmp_path)
    assert {"intake.db", "intake.db-wal"} <= set(files)
    for name, raw in files.items():
        assert_no_personal_bytes(raw, name)
    for table, texts in (await table_rows(embedded.runtime.db.engine)).items():
        assert_no_personal_text("\n".join(texts), f"table {table}")


# (c) Erasure -------------------------------------------------------------------------------


@dataclass
class Sealed:
    """What a copy of the database held for a case before its erasure."""

    key_version: int
    wrapped: bytes
    profile: bytes
    note: bytes
    plan: bytes


async def sealed(service: Service, case_id: uuid.UUID) -> Sealed:
    async with service.runtime.db.sessions() as session:
        key = await session.get(CaseKey, case_id)
        case = await session.get(Case, case_id)
        note = (await session.execute(select(Need.note).where(col(Need.case_id) == case_id))).one()
        plan = await session.get(Plan, case_id)
    assert key is not None
    assert case is not None
    assert case.personal is not None
    assert note[0] is not None
    assert plan is not None
    assert plan.content is not None
    return Sealed(key.key_version, key.wrapped, case.personal, note[0], plan.content)


async def erase_and_check(service: Service) -> Sealed:
    """Register, keep a copy of what is sealed, erase, and check nothing opens it."""
    created = await service.register(case_body())
    case_id = uuid.UUID(created["id"])
    await add_note(service, created["id"], NOTE)
    await set_goals(service, created["id"], PLAN)
    copy = await sealed(service, case_id)
    keyring = keyring_of(service.runtime)

    # With its wrapped key, the copy opens: it is the real thing.
    data_key = keyring.unwrap(case_id, copy.key_version, copy.wrapped)
    opened = profiles.unseal(data_key, case_id, copy.profile)
    assert opened.person.given_name == "Zephyrine"
    assert unseal_json(data_key, case_id, needs.NOTE, copy.note) == NOTE
    assert PLAN in str(unseal_json(data_key, case_id, plans.GOALS, copy.plan))

    r = await service.client.delete(f"/v1/cases/{case_id}", headers=service.headers)
    assert r.status_code == 204

    async with service.runtime.db.sessions() as session:
        assert await session.get(CaseKey, case_id) is None
        case = await session.get(Case, case_id)
        assert case is not None
        assert case.personal is None
        notes = (await session.execute(select(Need.note).where(col(Need.case_id) == case_id))).all()
        assert notes
        assert all(n is None for (n,) in notes)
        plan = await session.get(Plan, case_id)
        assert plan is not None
        assert plan.content is None
        index = await session.execute(select(CaseIndex).where(col(CaseIndex.case_id) == case_id))
        assert index.all() == []

    # The wrapped key, and the ciphertexts, are nowhere in the database.
    gone = [copy.wrapped, copy.profile, copy.note, copy.plan]
    for table, texts in (await table_rows(service.runtime.db.engine)).items():
        joined = "\n".join(texts).lower()
        for blob in gone:
            assert blob.hex() not in joined, f"sealed data still in table {table}"
        assert_no_personal_text(joined, f"table {table}")

    # No master key (nor the index key) opens the copy without the destroyed data key.
    keys = [*keyring.master_keys.values(), keyring.index_key]
    for key in keys:
        for purpose, blob in [
            (profiles.PURPOSE, copy.profile),
            (needs.NOTE, copy.note),
            (plans.GOALS, copy.plan),
        ]:
            with pytest.raises(KeyringError):
                unseal_json(key, case_id, purpose, blob)

    # The case stays, pseudonymous.
    r = await service.client.get(f"/v1/cases/{case_id}", headers=service.headers)
    assert r.status_code == 200
    erased = r.json()
    assert erased["status"] == "erased"
    assert erased["person"] is None
    assert erased["erased_at"] is not None
    assert erased["vulnerabilities"] == []
    assert erased["demobilization_date"] is None
    same = ("id", "case_number", "programme_track", "beneficiary_category", "area", "age_band")
    assert {k: erased[k] for k in same} == {k: created[k] for k in same}
    r = await service.client.get("/v1/cases", params={"name": "Zephyrine"}, headers=service.headers)
    assert r.json()["items"] == []
    r = await service.client.get(
        "/v1/cases", params={"case_number": created["case_number"]}, headers=service.headers
    )
    [found] = r.json()["items"]
    assert found["given_name"] is None
    assert found["status"] == "erased"
    return copy


async def test_erasure_cannot_be_undone_on_postgresql(intake: Intake, service: Service) -> None:
    recorder = await intake.record("case.erased")
    await erase_and_check(service)
    [event] = await recorder.wait_for(1)
    assert event.type == "icrs.case.erased"
    assert_no_personal_text(event.to_json().decode(), "the case.erased event")


def assert_sealed_data_gone(files: dict[str, bytes], copy: Sealed) -> None:
    for name, raw in files.items():
        for blob in (copy.wrapped, copy.profile, copy.note, copy.plan):
            assert blob not in raw, f"sealed data still in {name}"
        assert_no_personal_bytes(raw, name)


async def test_erasure_cannot_be_undone_on_sqlite(tmp_path: Path, issuer: TestIssuer) -> None:
    async with embedded_service(tmp_path, issuer) as embedded:
        copy = await erase_and_check(embedded)
        await all_published(embedded, embedded.runtime.db.engine)
        [event] = [e for e in embedded.events if e.type == "icrs.case.erased"]
        assert_no_personal_text(event.to_json().decode(), "the case.erased event")
    # Stopped, the database is one file: PRAGMA secure_delete overwrote what was deleted.
    files = database_files(tmp_path)
    assert set(files) == {"intake.db"}
    assert_sealed_data_gone(files, copy)


async def test_erasure_leaves_nothing_in_the_sqlite_files_while_running(
    embedded: Service, tmp_path: Path
) -> None:
    copy = await erase_and_check(embedded)
    await all_published(embedded, embedded.runtime.db.engine)
    assert_sealed_data_gone(database_files(tmp_path), copy)
