"""Imports: every row accounted for, idempotent re-imports, refusals, and how an import
ends when its process stops."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_intake.app import create_app
from icrs_intake.cases import service as cases
from icrs_intake.cases.create import create_cases
from icrs_intake.cases.schemas import CaseCreate
from icrs_intake.crypto import Keyring
from icrs_intake.imports import repository, running, service
from icrs_intake.imports.apply import source_digest
from icrs_intake.imports.rows import COLUMNS, CsvRows, ndjson_rows
from icrs_intake.imports.spool import BLOCK, SealedSpool
from icrs_intake.models import Case, CaseIndex, Import
from icrs_intake.settings import IntakeSettings
from icrs_intake.state import keyring_of
from icrs_shared.bus import InProcessBus
from icrs_shared.testing import eventually
from icrs_shared.testing.tokens import TestIssuer

if TYPE_CHECKING:
    from conftest import Intake

CSV = "text/csv"
NDJSON = "application/x-ndjson"
COUNTS = ("created", "updated", "unchanged", "rejected")

#: Rows of a CSV file: cells by column, cells as written, or None for a blank line.
Rows = list[dict[str, str] | list[str] | None]


def row(i: int, **changes: str) -> dict[str, str]:
    """A registry row, as CSV cells."""
    cells = dict.fromkeys(COLUMNS, "")
    cells.update(
        external_id=f"GOV-{i:05d}",
        given_name="Amina" if i % 2 else "Cabdi",
        family_name=f"Warsame{i}",
        sex="female" if i % 2 else "male",
        date_of_birth=f"{1970 + i % 30}-0{1 + i % 9}-1{i % 9}",
        languages="so;ar",
        phone=f"+252 61 {i:07d}",
        document_type="ddr_id",
        document_number=f"DDR-{i:05d}",
        beneficiary_category="ex_combatant",
        programme_track="DDR",
        area="SO1101",
        demobilization_date="2024-10-01",
    )
    cells.update(changes)
    return cells


def csv_file(rows: Rows, columns: list[str] | None = None) -> bytes:
    """A CSV file; a None row is a blank line, a list is written as it is."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns or COLUMNS)
    for r in rows:
        if r is None:
            out.write("\n")
        else:
            writer.writerow(
                r if isinstance(r, list) else [r.get(c, "") for c in columns or COLUMNS]
            )
    return out.getvalue().encode()


def case_object(i: int) -> dict[str, Any]:
    return {
        "external_id": f"REG-{i:05d}",
        "person": {
            "given_name": "Maryan",
            "family_name": f"Nuur{i}",
            "sex": "female",
            "date_of_birth": "1990-05-02",
            "languages": ["so"],
        },
        "beneficiary_category": "associate",
        "programme_track": "CVR",
        "area": "SO22",
    }


async def post(intake: Intake, content: bytes, content_type: str = CSV, **headers: str) -> Any:
    sent = {**intake.headers("cases:import"), "Content-Type": content_type, **headers}
    return await intake.client.post("/v1/imports", content=content, headers=sent)


async def finished(client: httpx.AsyncClient, location: str, headers: dict[str, str]) -> Any:
    """The import's report once it is no longer running."""
    seen: dict[str, Any] = {}

    async def done() -> bool:
        r = await client.get(location, headers=headers)
        assert r.status_code == 200, r.text
        seen.update(r.json())
        return bool(seen["status"] != "running")

    await eventually(done, within=60)
    return seen


async def imported(intake: Intake, content: bytes, content_type: str = CSV) -> dict[str, Any]:
    r = await post(intake, content, content_type)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "running"
    assert r.headers["location"] == f"/v1/imports/{r.json()['id']}"
    report = await finished(intake.client, r.headers["location"], intake.headers("cases:import"))
    assert report["status"] == "completed"
    assert report["rows"] == sum(report[k] for k in COUNTS)
    return report


async def all_rejections(intake: Intake, import_id: str) -> set[tuple[int, str, str]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        r = await intake.client.get(
            f"/v1/imports/{import_id}", params=params, headers=intake.headers("cases:import")
        )
        found += r.json()["rejections"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return {(x["row"], x["field"], x["reason"]) for x in found}


def fields(rejections: set[tuple[int, str, str]]) -> set[tuple[int, str]]:
    return {(row, where) for row, where, _ in rejections}


async def count_cases(intake: Intake) -> int:
    async with intake.app.state.runtime.db.sessions() as session:
        return int((await session.scalar(select(func.count()).select_from(Case))) or 0)


async def test_csv_import_accounts_for_every_row(
    intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = await intake.record("import.completed")
    rows: Rows = [row(i) for i in range(1, 301)]
    rows[9] = row(10, date_of_birth="1998-13-40")
    rows[19] = row(20, sex="unknownsex")
    rows[29] = row(30, external_id="")
    rows[39] = row(40, area="12 34", vulnerabilities="Not a code")
    rows[49] = row(50, external_id="GOV-00005")
    rows[59] = ["GOV-00060", "Too", "Few"]
    rows[99] = None  # a blank line: skipped, but it keeps its place
    columns = [*COLUMNS, "nickname"]
    content = csv_file(
        [r if not isinstance(r, dict) else {**r, "nickname": "x"} for r in rows], columns
    )

    report = await imported(intake, content)

    assert report["rows"] == 299
    assert (report["created"], report["rejected"]) == (293, 6)
    rejections = await all_rejections(intake, report["id"])
    assert fields(rejections) == {
        (0, "nickname"),
        (10, "date_of_birth"),
        (20, "sex"),
        (30, "external_id"),
        (40, "area"),
        (40, "vulnerabilities"),
        (50, "external_id"),
        (60, "row"),
    }
    reasons = {(r, f): reason for r, f, reason in rejections}
    assert reasons[50, "external_id"] == "repeats row 5"
    assert reasons[60, "row"] == "has 3 cells where the header has 19"
    assert reasons[0, "nickname"] == "unknown column: ignored"
    assert "Amina" not in json.dumps(sorted(rejections))

    r = await intake.client.get(
        "/v1/cases", params={"external_id": "GOV-00300"}, headers=intake.headers("cases:read")
    )
    [summary] = r.json()["items"]
    assert summary["family_name"] == "Warsame300"
    case = await intake.client.get(
        f"/v1/cases/{summary['id']}", headers=intake.headers("cases:read")
    )
    assert case.json()["person"]["languages"] == ["so", "ar"]
    assert case.json()["person"]["documents"] == [{"type": "ddr_id", "number": "DDR-00300"}]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "import" in r.name]
    [event] = await recorder.wait_for(1)
    assert event.subject == report["id"]
    assert [event.data[k] for k in COUNTS] == [293, 0, 0, 6]


async def test_ndjson_import_names_lines_and_paths(intake: Intake) -> None:
    lines = [json.dumps(case_object(i)) for i in range(1, 201)]
    lines[4] = '{"external_id": "REG-00005", "person": '
    lines[9] = json.dumps(
        {**case_object(10), "person": {**case_object(10)["person"], "date_of_birth": "2990-01-01"}}
    )
    lines[14] = json.dumps({k: v for k, v in case_object(15).items() if k != "external_id"})
    lines[19] = json.dumps({**case_object(20), "nickname": "x"})
    lines[24] = "[1, 2]"
    lines[29] = json.dumps(case_object(3))
    lines[34] = ""
    content = ("\n".join(lines) + "\n").encode()

    report = await imported(intake, content, NDJSON)

    assert (report["rows"], report["created"], report["rejected"]) == (199, 193, 6)
    assert fields(await all_rejections(intake, report["id"])) == {
        (5, "line"),
        (10, "person.date_of_birth"),
        (15, "external_id"),
        (20, "nickname"),
        (25, "line"),
        (30, "external_id"),
    }
    # NDJSON also comes as application/jsonl.
    again = await imported(intake, lines[0].encode(), "application/jsonl")
    assert again["unchanged"] == 1


async def test_reimport_changes_nothing_and_a_changed_row_updates(intake: Intake) -> None:
    recorder = await intake.record("case.*", "import.completed")
    rows: Rows = [row(i) for i in range(1, 51)]
    first = await imported(intake, csv_file(rows))
    assert first["created"] == 50
    await recorder.wait_for(51)

    again = await imported(intake, csv_file(rows))
    assert (again["rows"], again["unchanged"], again["created"], again["updated"]) == (50, 50, 0, 0)
    await eventually(lambda: len(recorder.of_type("icrs.import.completed")) == 2)
    assert len(recorder.of_type("icrs.case.registered")) == 50
    assert len(recorder.of_type("icrs.case.updated")) == 0
    assert await count_cases(intake) == 50

    # A caseworker notes an email; the registry then changes a name and drops a document.
    caseworker = intake.headers("cases:read", "cases:write")
    [found] = (
        await intake.client.get(
            "/v1/cases", params={"external_id": "GOV-00007"}, headers=caseworker
        )
    ).json()["items"]
    path = f"/v1/cases/{found['id']}"
    patch = {"person": {"contact": {"phone": "+252 61 0000007", "email": "amina@example.org"}}}
    r = await intake.client.patch(
        path, json=patch, headers={**caseworker, "If-Match": f'"{found["id"]}.1"'}
    )
    assert r.status_code == 200, r.text
    rows[6] = row(7, family_name="Warsame Ali", document_type="", document_number="")
    changed = await imported(intake, csv_file(rows))
    assert (changed["updated"], changed["unchanged"]) == (1, 49)
    person = (await intake.client.get(path, headers=caseworker)).json()["person"]
    assert person["family_name"] == "Warsame Ali"
    assert person["contact"]["email"] == "amina@example.org"
    assert person["documents"] == [{"type": "ddr_id", "number": "DDR-00007"}]

    # A closed case stays as it is: the same row is unchanged, a changed one rejected.
    assert (await intake.client.post(f"{path}/close", headers=caseworker)).status_code == 200
    assert (await imported(intake, csv_file(rows)))["unchanged"] == 50
    rows[6] = row(7, family_name="Warsame Cali")
    closed = await imported(intake, csv_file(rows))
    assert (closed["rejected"], closed["unchanged"]) == (1, 49)
    assert fields(await all_rejections(intake, closed["id"])) == {(7, "external_id")}
    await eventually(lambda: len(recorder.of_type("icrs.import.completed")) == 5)
    assert len(recorder.of_type("icrs.case.updated")) == 2  # the caseworker's and the import's


async def test_an_erased_person_is_not_registered_again(intake: Intake) -> None:
    rows: Rows = [row(i) for i in range(1, 4)]
    assert (await imported(intake, csv_file(rows)))["created"] == 3
    caseworker = intake.headers("cases:read", "cases:write")
    found = await intake.client.get(
        "/v1/cases", params={"external_id": "GOV-00002"}, headers=caseworker
    )
    [erased] = found.json()["items"]
    r = await intake.client.delete(f"/v1/cases/{erased['id']}", headers=caseworker)
    assert r.status_code == 204

    again = await imported(intake, csv_file(rows))
    assert (again["unchanged"], again["rejected"], again["created"]) == (2, 1, 0)
    [(number, field, reason)] = await all_rejections(intake, again["id"])
    assert (number, field) == (2, "external_id")
    assert "erased" in reason
    assert await count_cases(intake) == 3
    # Another organization's registry may still hold the same id for its own person.
    other = uuid.uuid4()
    r = await intake.client.post(
        "/v1/imports",
        content=csv_file(rows),
        headers={**intake.headers("cases:import", organization_id=other), "Content-Type": CSV},
    )
    report = await finished(
        intake.client, r.headers["location"], intake.headers("cases:import", organization_id=other)
    )
    assert report["created"] == 3


async def test_refusals(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    content = csv_file([row(1)])
    r = await post(intake, content, "application/json")
    assert (r.status_code, r.headers["content-type"]) == (415, "application/problem+json")
    assert (await post(intake, content, "text/csv; charset=latin-1")).status_code == 415
    assert (await post(intake, b"", CSV)).status_code == 422
    assert (await post(intake, b"\n \n", NDJSON)).json()["errors"][0]["code"] == "empty"
    assert (await post(intake, "é".encode("latin-1"), NDJSON)).json()["errors"][0][
        "code"
    ] == "encoding"
    headerless = await post(intake, b"given_name,family_name\nAmina,Warsame\n")
    assert (headerless.status_code, headerless.json()["errors"][0]["field"]) == (422, "external_id")
    assert "Amina" not in headerless.text

    monkeypatch.setattr(intake.settings, "max_import_bytes", 100)
    r = await post(intake, content)
    assert (r.status_code, r.json()["type"]) == (413, "urn:icrs:problem:content-too-large")
    monkeypatch.undo()
    monkeypatch.setattr(running, "MAX_RUNNING", 0)
    r = await post(intake, content, **{"Content-Length": str(len(content))})
    assert (r.status_code, r.headers["retry-after"]) == (429, "60")
    monkeypatch.undo()

    reader = {**intake.headers("cases:read", "cases:write"), "Content-Type": CSV}
    assert (
        await intake.client.post("/v1/imports", content=content, headers=reader)
    ).status_code == 403
    assert (
        await intake.client.get("/v1/imports", headers=intake.headers("cases:read"))
    ).status_code == 403

    report = await imported(intake, content)
    other = intake.headers("cases:import", organization_id=uuid.uuid4())
    assert (
        await intake.client.get(f"/v1/imports/{report['id']}", headers=other)
    ).status_code == 404
    assert (await intake.client.get("/v1/imports", headers=other)).json()["items"] == []
    mine = (await intake.client.get("/v1/imports", headers=intake.headers("cases:import"))).json()
    assert [i["id"] for i in mine["items"]] == [report["id"]]


async def test_idempotency_key(intake: Intake) -> None:
    content = csv_file([row(1), row(2)])
    first = await post(intake, content, **{"Idempotency-Key": "import-1"})
    again = await post(intake, content, **{"Idempotency-Key": "import-1"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await post(intake, csv_file([row(3)]), **{"Idempotency-Key": "import-1"})
    assert other.status_code == 409
    await finished(intake.client, first.headers["location"], intake.headers("cases:import"))
    listed = (await intake.client.get("/v1/imports", headers=intake.headers("cases:import"))).json()
    assert len(listed["items"]) == 1


async def test_a_failing_batch_is_stored_row_by_row(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: Rows = [row(i) for i in range(1, 31)]
    await imported(intake, csv_file(rows[:1]))
    monkeypatch.setattr(service, "BATCH_ROWS", 10)
    # The first batch misses the case of row 1 and registers it again: the unique
    # external id makes the batch fail. Row 12 cannot be stored in any way.
    real_lookup = repository.cases_by_external_id
    calls = 0

    async def forgetful(*args: Any) -> dict[str, Case]:
        nonlocal calls
        calls += 1
        return {} if calls == 1 else await real_lookup(*args)

    real_register = service.create_cases

    async def failing(**kw: Any) -> None:
        if any(data.external_id == "GOV-00012" for data, _ in kw["new"]):
            raise IntegrityError("INSERT", {}, Exception("constraint"))
        await real_register(**kw)

    monkeypatch.setattr(repository, "cases_by_external_id", forgetful)
    monkeypatch.setattr(service, "create_cases", failing)
    report = await imported(intake, csv_file(rows))
    counts = tuple(report[k] for k in ("rows", "created", "unchanged", "rejected"))
    assert counts == (30, 28, 1, 1)
    assert await all_rejections(intake, report["id"]) == {
        (12, "row", "could not be stored: it conflicts with data stored already")
    }
    assert await count_cases(intake) == 29


def without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if not k.endswith("id")}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


async def stored(session: AsyncSession, keyring: Keyring, org: uuid.UUID, external_id: str) -> Any:
    """A case as stored: its columns, its profile in clear, and its index."""
    query = select(Case).where(
        col(Case.organization_id) == org, col(Case.external_id) == external_id
    )
    case = (await session.execute(query)).scalar_one()
    opened = await cases.open_case(session, keyring, case)
    query_index = select(CaseIndex.kind, CaseIndex.digest).where(col(CaseIndex.case_id) == case.id)
    index = set((await session.execute(query_index)).all())
    return case, opened.profile, index


async def test_batched_registration_stores_what_register_does(intake: Intake) -> None:
    """The import registers new cases a batch at a time; the result is register()'s."""
    runtime = intake.app.state.runtime
    keyring = keyring_of(runtime)
    minor_person = {**case_object(2)["person"], "date_of_birth": None, "estimated_age": 15}
    adult = CaseCreate.model_validate({**case_object(1), "vulnerabilities": ["disability"]})
    minor = CaseCreate.model_validate({**case_object(2), "person": minor_person})
    one_by_one, batched = uuid.uuid4(), uuid.uuid4()
    recorder = await intake.record("case.registered", "needs.assessed")
    common: dict[str, Any] = {
        "outbox": runtime.messaging.outbox,
        "keyring": keyring,
        "settings": intake.settings,
        "actor": "importer",
    }
    async with runtime.db.transaction() as session:
        for data in (adult, minor):
            await cases.register(
                session=session,
                data=data.model_copy(update={"duplicates_checked": True}),
                organization_id=one_by_one,
                source_digest=source_digest(keyring, data),
                **common,
            )
        new = [(data, source_digest(keyring, data)) for data in (adult, minor)]
        await create_cases(session=session, organization_id=batched, new=new, **common)
    events = await recorder.wait_for(6)

    skip = {"id", "organization_id", "case_number", "personal", "created_at", "updated_at"}
    async with runtime.db.sessions() as session:
        for external_id in ("REG-00001", "REG-00002"):
            a, b = [
                await stored(session, keyring, org, external_id) for org in (one_by_one, batched)
            ]
            assert a[0].model_dump(exclude=skip) == b[0].model_dump(exclude=skip)
            assert re.fullmatch(r"ICRS-\d{4}-\d{6}", b[0].case_number)
            assert a[1] == b[1]
            assert a[2] == b[2]
            assert a[2]
            of = [[e for e in events if e.subject == str(c.id)] for c, _, _ in (a, b)]
            assert [(e.type, e.actor, without_ids(e.data)) for e in of[0]] == [
                (e.type, e.actor, without_ids(e.data)) for e in of[1]
            ]
            assert len(of[0]) == (1 if external_id == "REG-00001" else 2)


async def test_an_import_that_breaks_reads_failed(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH_ROWS", 10)
    real_register = service.create_cases

    async def breaking(**kw: Any) -> None:
        if any(data.external_id == "GOV-00015" for data, _ in kw["new"]):
            raise RuntimeError("the database went away")
        await real_register(**kw)

    monkeypatch.setattr(service, "create_cases", breaking)
    r = await post(intake, csv_file([row(i) for i in range(1, 31)]))
    report = await finished(intake.client, r.headers["location"], intake.headers("cases:import"))
    assert (report["status"], report["rows"], report["created"]) == ("failed", 10, 10)
    assert report["finished_at"] is not None
    assert await count_cases(intake) == 10


async def test_an_import_stopped_with_the_app_reads_interrupted(
    intake: Intake, memory_bus: InProcessBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH_ROWS", 5)
    real_register = service.create_cases

    async def slow(**kw: Any) -> None:
        await asyncio.sleep(0.2)
        await real_register(**kw)

    monkeypatch.setattr(service, "create_cases", slow)
    # A second app on the same database, stopped while its import runs.
    app = create_app(intake.settings, memory_bus, jwks=intake.issuer.jwks())
    headers = intake.headers("cases:import")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            content = csv_file([row(i) for i in range(1, 200)])
            r = await client.post(
                "/v1/imports", content=content, headers={**headers, "Content-Type": CSV}
            )
            assert r.status_code == 202

            async def started() -> bool:
                report = await client.get(r.headers["location"], headers=headers)
                return bool(report.json()["rows"] > 0)

            await eventually(started)
    report = (
        await intake.client.get(r.headers["location"], headers=intake.headers("cases:import"))
    ).json()
    assert report["status"] == "interrupted"
    assert 0 < report["rows"] < 199
    assert report["rows"] == report["created"]
    assert report["finished_at"] is not None


async def test_a_running_import_without_a_process_reads_interrupted(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with intake.app.state.runtime.db.transaction() as session:
        orphan = Import(
            organization_id=intake.organization_id,
            format="csv",
            started_by="x",
            rows=10,
            created=10,
        )
        session.add(orphan)
    path = f"/v1/imports/{orphan.id}"
    headers = intake.headers("cases:import")
    assert (await intake.client.get(path, headers=headers)).json()["status"] == "running"
    monkeypatch.setattr(running, "STALLED_AFTER", 0.0)
    report = (await intake.client.get(path, headers=headers)).json()
    assert (report["status"], report["rows"]) == ("interrupted", 10)


# The file, below the API ---------------------------------------------------------------


def test_the_spool_reads_back_what_was_written_and_keeps_no_clear_text() -> None:
    data = b"GOV-1,Amina,Warsame\n" * (BLOCK // 10)
    with SealedSpool() as spool:
        for i in range(0, len(data), 1000):
            spool.write(data[i : i + 1000])
        assert spool.open().read() == data
        assert spool.open().read() == data
        spool._file.seek(0)
        assert b"Amina" not in spool._file.read()


def test_csv_rows_are_numbered_by_record() -> None:
    content = (
        b"\xef\xbb\xbfExternal_ID,given_name\r\n"
        b'A-1,"two\r\nlines"\r\n'
        b'A-2,"bad"x\r\n'
        b"\r\n"
        b"A-3,Amina\r\n"
    )
    parsed = CsvRows(io.BytesIO(content))
    assert parsed.columns == ["external_id", "given_name"]
    rows = list(parsed)
    assert [r.number for r in rows] == [1, 2, 4]
    assert "given_name" in [x.field for x in rows[0].rejections]  # no line breaks in a name
    assert rows[1].rejections[0].field == "row"
    assert rows[1].rejections[0].reason.startswith("not valid CSV")
    assert "given_name" not in [x.field for x in rows[2].rejections]


def test_a_long_ndjson_line_is_rejected_and_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from icrs_intake.imports import rows as rows_module

    monkeypatch.setattr(rows_module, "MAX_LINE", 50)
    content = b'{"a": "' + b"x" * 200 + b'"}\n[]\n'
    found = list(ndjson_rows(io.BytesIO(content)))
    assert [(r.number, r.rejections[0].field, r.rejections[0].reason) for r in found] == [
        (1, "line", "longer than 50 bytes"),
        (2, "line", "must be a JSON object"),
    ]


async def test_imports_on_the_embedded_default(
    memory_bus: InProcessBus, issuer: TestIssuer, tmp_path: Path
) -> None:
    """`icrs up` runs on SQLite: an import, a re-import and a change work there too."""
    settings = IntakeSettings(data_dir=tmp_path, public_url=issuer.issuer)
    app = create_app(settings, memory_bus, jwks=issuer.jwks())
    headers = {**issuer.headers("cases:import", organization_id=uuid.uuid4()), "Content-Type": CSV}
    rows: Rows = [row(i) for i in range(1, 41)]
    rows[3] = row(4, sex="x")
    files = (csv_file(rows), csv_file(rows), csv_file([row(1, family_name="Ali")]))
    counts = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            for content in files:
                r = await client.post("/v1/imports", content=content, headers=headers)
                assert r.status_code == 202, r.text
                report = await finished(client, r.headers["location"], headers)
                counts.append((report["status"], *(report[k] for k in COUNTS)))
    assert counts == [
        ("completed", 39, 0, 0, 1),
        ("completed", 0, 0, 39, 1),
        ("completed", 0, 1, 0, 0),
    ]
