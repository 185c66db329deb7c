"""Bulk import of cases on the real broker and database: a generated CSV file (about 1% of
its rows bad) posted to the intake app's `POST /v1/imports`, streamed from disk. Records
the rate, the counts, that every row is accounted for, and the memory an import takes
beside the file's size. Three imports of the same file:

1. `import`: every good row registers a case (tracemalloc off: this is the rate);
2. `reimport`: the same organization again: every good row must come back unchanged;
3. `import_traced`: a second organization, so cases are registered again, with
   tracemalloc on for the Python heap's peak (tracing slows Python: not a rate to quote).

Between imports the outbox is left to drain (every event published), so that each
import runs alone. The intake app runs in this process (httpx ASGITransport) on a fresh
PostgreSQL database and a RabbitBus in a namespace of its own (removed afterwards), with
a test token issuer.

    uv run python bench/intake_import.py [--rows 100000] [--out bench/results/intake_import.json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import resource
import shutil
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from icrs_intake.app import create_app
from icrs_intake.imports.rows import COLUMNS
from icrs_intake.imports.service import BATCH_ROWS
from icrs_intake.models import outbox_table
from icrs_intake.settings import IntakeSettings
from icrs_shared.bus import RabbitBus
from icrs_shared.testing.databases import create_database, drop_database
from icrs_shared.testing.tokens import TestIssuer

AMQP = os.environ.get("ICRS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get(
    "ICRS_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
GIVEN = ("Amina", "Cabdi", "Maryan", "Xasan", "Faadumo", "Yusuf", "Hodan", "Abdirahman")
AREAS = ("SO1101", "SO1102", "SO2201", "SO2203", "SO31")
BAD = (
    {"date_of_birth": "1998-13-40"},
    {"sex": "unknownsex"},
    {"external_id": ""},
    {"area": "12 34"},
)


def cells(
    i: int, *, family_name: Callable[[int], str] = "Warsame{}".format, mixed: bool = True
) -> dict[str, str]:
    """Row `i`, an adult named `family_name(i)`. `mixed`: some rows with an alias, on the CVR
    track or with a vulnerability, and 1% bad; without it, none."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        external_id=f"GOV-{i:07d}",
        given_name=GIVEN[i % len(GIVEN)],
        family_name=family_name(i),
        aliases=f"Ali{i}" if mixed and i % 5 == 0 else "",
        sex="female" if i % 2 else "male",
        date_of_birth=f"{1960 + i % 45}-{1 + i % 12:02d}-{1 + i % 28:02d}",
        languages="so;ar" if i % 3 else "so",
        phone=f"+252 61 {i:07d}",
        document_type="ddr_id",
        document_number=f"DDR-{i:07d}",
        beneficiary_category="ex_combatant" if i % 4 else "associate",
        programme_track="DDR" if not mixed or i % 7 else "CVR",
        area=AREAS[i % len(AREAS)],
        demobilization_date="2024-10-01",
        vulnerabilities="disability" if mixed and i % 11 == 0 else "",
    )
    if mixed and i % 100 == 0:  # 1% bad, with one of four faults
        row.update(BAD[(i // 100) % len(BAD)])
    return row


def write_file(path: Path, rows: int, row: Callable[[int], dict[str, str]] = cells) -> None:
    """The CSV of `rows` rows, written a row at a time."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(1, rows + 1):
            values = row(i)
            writer.writerow([values[c] for c in COLUMNS])


async def chunks(path: Path, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


async def drain(app: Any) -> float:
    """Seconds until every event in the outbox is published."""
    started = time.perf_counter()
    unsent = select(func.count()).select_from(outbox_table).where(outbox_table.c.sent_at.is_(None))
    while True:
        async with app.state.runtime.db.sessions() as session:
            if not await session.scalar(unsent):
                return round(time.perf_counter() - started, 1)
        await asyncio.sleep(1)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_import(
    client: httpx.AsyncClient, headers: dict[str, str], path: Path, *, trace: bool
) -> dict[str, Any]:
    rss_before = peak_rss_mib()
    load_before = os.getloadavg()[0]
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    r = await client.post(
        "/v1/imports", content=chunks(path), headers={**headers, "Content-Type": "text/csv"}
    )
    assert r.status_code == 202, r.text
    accepted = time.perf_counter() - started
    while True:
        polled = await client.get(r.headers["location"], headers=headers)
        assert polled.status_code == 200, polled.text
        report = polled.json()
        if report["status"] != "running":
            break
        await asyncio.sleep(0.5)
    elapsed = time.perf_counter() - started
    heap_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()
    counted = sum(report[k] for k in ("created", "updated", "unchanged", "rejected"))
    return {
        "status": report["status"],
        "seconds": round(elapsed, 1),
        "upload_seconds": round(accepted, 2),
        "rows_per_s": round(report["rows"] / elapsed, 1),
        "rows": report["rows"],
        "created": report["created"],
        "updated": report["updated"],
        "unchanged": report["unchanged"],
        "rejected": report["rejected"],
        "every_row_accounted_for": counted == report["rows"],
        "peak_rss_mib_before": round(rss_before, 1),
        "peak_rss_mib_after": round(peak_rss_mib(), 1),
        "python_heap_peak_mib": None if heap_peak is None else round(heap_peak, 1),
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/intake_import.json"))
    args = parser.parse_args()

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="icrs-bench-import-"))
    path = work / "cases.csv"
    write_file(path, args.rows)
    bad = args.rows // 100  # every hundredth row (cells)
    size_mib = round(path.stat().st_size / 2**20, 1)
    url = await create_database(PG, prefix="icrs_bench")
    bus = RabbitBus(AMQP, namespace=f"bench-{uuid.uuid4().hex[:8]}.")
    issuer = TestIssuer()
    settings = IntakeSettings(database_url=url, data_dir=work, public_url=issuer.issuer)
    app = create_app(settings, bus, jwks=issuer.jwks())
    orgs = [uuid.uuid4(), uuid.uuid4()]
    as_org = [
        issuer.headers("cases:import", organization_id=o, client_id=f"bench-{o}", lifetime=3600)
        for o in orgs
    ]
    results: dict[str, Any] = {}
    try:
        await bus.start()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://intake", timeout=600
            ) as client:
                for name, headers, trace in (
                    ("import", as_org[0], False),
                    ("reimport", as_org[0], False),
                    ("import_traced", as_org[1], True),
                ):
                    print(f"{name}...", flush=True)
                    results[name] = await run_import(client, headers, path, trace=trace)
                    results[name]["outbox_drained_after_s"] = await drain(app)
                    print(json.dumps(results[name]), flush=True)
    finally:
        await bus.delete_topology()
        await bus.close()
        await drop_database(url)
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "bus": "RabbitBus (own namespace)",
        "rows": args.rows,
        "rows_meant_bad": bad,
        "total_seconds": round(time.perf_counter() - began, 1),
        "file_mib": size_mib,
        "batch_rows": BATCH_ROWS,
        **results,
        "reimport_all_unchanged": results["reimport"]["unchanged"] == args.rows - bad
        and results["reimport"]["created"] == results["reimport"]["updated"] == 0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
