"""The whole pipeline under load, beside the broker's and the database's ceilings, measured
in the same run.

The four services run as separate `icrs serve` processes on the local RabbitMQ and
PostgreSQL (`icrs.processes.ProcessPlatform`). A load generator registers people at a
steady rate (case, consent to referral, a needs assessment: three requests each, every
person different), and a partner answers every referral in its inbox through the API
(accepts it). The rate rises step by step until latency breaks or the platform falls
behind. For each step:

- cases/s and events/s sustained (events: entries the audit log appended in the step);
- latency from the needs assessment's commit (its `needs.assessed` event's time) to the
  referral in the partner's inbox (the referral row's `created_at`), p50/p95/p99;
- latency from each event's time to its entry in the audit log (`appended_at`).

The ceilings: raw aio-pika confirmed publishes into a quorum queue and consumption with
acks (`bus_throughput.raw_ceiling`), and PostgreSQL's commit rate (pgbench, one insert per
transaction). Beside them, the least a case's messages and transactions cost: CPU per
confirmed publish and per acked consume (client and broker), per one-insert transaction
on the services' stack (client and PostgreSQL), times what each case of a step took;
and what a quarter of the raw confirmed-publish rate would take in cores.

`--replicas 2` runs two processes each of the referral and audit services and checks
that no need got two referrals and no event two log entries. The drain
(`--drain-cases`) measures one and two replicas of referral, then of audit, each alone on
the machine, working off a backlog.

    uv run --no-sync python bench/pipeline.py [--rates 5,10,15,20] [--step-seconds 20] \
        [--replicas 1,2] [--drain-cases 1000] [--out bench/results/pipeline.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from bus_throughput import broker_process, cpu_used, raw_ceiling
from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from icrs.processes import PlatformClient, ProcessPlatform, ServiceProcess
from icrs_shared.db import Database
from icrs_shared.testing.databases import create_database, drop_database

AMQP = os.environ.get("ICRS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get(
    "ICRS_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
#: A step is broken when its p99 to the inbox passes this, or it falls behind its rate.
LATENCY_LIMIT_S = 5.0


def quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50": None, "p95": None, "p99": None, "n": len(values)}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(q[49] * 1000, 1),
        "p95": round(q[94] * 1000, 1),
        "p99": round(q[98] * 1000, 1),
        "n": len(values),
    }


def pgbench(seconds: int) -> dict[str, float]:
    """PostgreSQL's commit rate: one-row insert transactions from 8 clients."""
    url = PG.replace("postgresql+asyncpg://", "postgresql://")
    host = re.search(r"@([^:/]+)", url)
    port = re.search(r":(\d+)/", url)
    database = f"icrs_pgbench_{os.getpid()}"
    base = ["-h", host.group(1) if host else "127.0.0.1", "-p", port.group(1) if port else "5432"]
    base += ["-U", "postgres"]
    subprocess.run(["createdb", *base, database], check=True)
    try:
        subprocess.run(
            ["psql", *base, "-q", "-d", database, "-c", "CREATE TABLE t (id bigserial, v int)"],
            check=True,
        )
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write("INSERT INTO t (v) VALUES (1);\n")
        command = ["pgbench", *base, "-n", "-c", "8", "-j", "2", "-T", str(seconds)]
        out = subprocess.run(
            [*command, "-f", script.name, database],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        os.unlink(script.name)
        tps = re.search(r"tps = ([\d.]+)", out)
        return {"commits_per_s": round(float(tps.group(1)), 1) if tps else 0.0}
    finally:
        subprocess.run(["dropdb", *base, "--if-exists", database], check=True)


class Load:
    """The load generator and the partner answering its inbox."""

    def __init__(self, client: PlatformClient, agency: dict[str, str], partner: dict[str, str]):
        self.client = client
        self.agency = agency
        self.partner = partner
        self.next_number = 1
        self.cases: dict[str, int] = {}  # case id -> step
        self.failures = 0
        self.answered = 0
        self.in_flight = 0
        self._stop_answering = asyncio.Event()

    async def one(self, step: int) -> None:
        number = self.next_number
        self.next_number += 1
        self.in_flight += 1
        try:
            case_id = await self.client.refer(self.agency, number)
            self.cases[case_id] = step
        except httpx.HTTPError:
            self.failures += 1
        finally:
            self.in_flight -= 1

    async def run_step(self, step: int, rate: float, seconds: float) -> tuple[int, float]:
        """Start `rate` people per second for `seconds` (open loop); wait for them all."""
        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic()
        total = int(rate * seconds)
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one(step)))
        await asyncio.gather(*tasks)
        return total, time.monotonic() - start

    async def answer(self) -> None:
        """Accept every referral in the partner's inbox, as a partner's system would."""
        referral = self.client.to("referral")
        while not self._stop_answering.is_set():
            r = await referral.get(
                "/v1/referrals/inbox",
                params={"status": "requested", "limit": 100},
                headers=self.partner,
            )
            items = r.json()["items"] if r.status_code == 200 else []
            for item in items:
                a = await referral.post(
                    f"/v1/referrals/{item['id']}/status",
                    json={"status": "accepted"},
                    headers=self.partner,
                )
                self.answered += a.status_code == 200
            if not items:
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        self._stop_answering.set()


def postgres_cpu() -> float:
    """CPU seconds the local PostgreSQL has used so far: its processes, and the backends
    that have exited since (counted by the postmaster)."""
    used = 0.0
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        if not name.startswith("postgres"):
            continue
        used += cpu_used(proc)
        try:
            parent = proc.parent()
            if parent is None or parent.name() != name:  # the postmaster
                t = proc.cpu_times()
                used += t.children_user + t.children_system
        except psutil.Error:
            continue
    return used


def cpu_seconds(p: ProcessPlatform) -> dict[str, float]:
    """CPU time used so far by each service (its replicas together), PostgreSQL, RabbitMQ
    and this load generator: where a step's work went."""
    used: dict[str, float] = {}
    for process in p.all_processes():
        if process.pid is not None:
            used[process.name] = used.get(process.name, 0.0) + cpu_used(psutil.Process(process.pid))
    used["postgresql"] = postgres_cpu()
    used["rabbitmq"] = cpu_used(broker_process())
    used["load generator"] = cpu_used(psutil.Process())
    return used


async def transaction_floor(n: int = 4000, clients: int = 8) -> dict[str, float]:
    """The least a consumer's or a request's transaction costs on the services' stack:
    a `Database.transaction()` (SQLAlchemy's async session over asyncpg, the services'
    pool settings) inserting one row, `clients` at a time; CPU milliseconds per
    transaction of this process and of PostgreSQL."""
    url = await create_database(PG, prefix="icrs_bench_txn")
    table = Table("t", MetaData(), Column("id", BigInteger, primary_key=True), Column("v", Integer))
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)

        async def client(count: int) -> None:
            for _ in range(count):
                async with db.transaction() as session:
                    await session.execute(insert(table).values(v=1))

        await client(100)  # warm: connections, compiled statement
        me, server, began = cpu_used(psutil.Process()), postgres_cpu(), time.perf_counter()
        await asyncio.gather(*(client(n // clients) for _ in range(clients)))
        done = n // clients * clients
        return {
            "per_s": round(done / (time.perf_counter() - began), 1),
            "cpu_ms_client": round(1000 * (cpu_used(psutil.Process()) - me) / done, 4),
            "cpu_ms_postgresql": round(1000 * (postgres_cpu() - server) / done, 4),
        }
    finally:
        await db.dispose()
        await drop_database(url)


async def tallies(p: ProcessPlatform, load: Load) -> dict[str, int]:
    """Counts of work done so far: events in the audit log, messages the other consumers
    took in within a transaction (their inbox rows), and write requests that succeeded
    (a case, a consent, an assessment per person; each answer to a referral)."""
    backlog = await p.backlog()
    return {
        "events": backlog.logged,
        "consumed": sum(backlog.consumed.values()),
        "writes": 3 * len(load.cases) + load.answered,
    }


def per_case(before: dict[str, int], after: dict[str, int], cases: int) -> dict[str, float]:
    """What each case of a step took, at the least: events published (each one confirmed
    publish); deliveries consumed with an ack (the audit log's, one an event, and those
    of the consumers that wrote an inbox row; consumers that ack an event untouched are
    not counted); write transactions (the write requests and those inbox rows)."""
    events = after["events"] - before["events"]
    consumed = after["consumed"] - before["consumed"]
    writes = after["writes"] - before["writes"]
    cases = max(cases, 1)
    return {
        "events": round(events / cases, 2),
        "deliveries_at_least": round((events + consumed) / cases, 2),
        "write_transactions_at_least": round((writes + consumed) / cases, 2),
    }


def floor_ms(counts: dict[str, float], ceiling: dict[str, Any]) -> dict[str, float]:
    """CPU milliseconds a case needs at the least, counting only its messages and
    transactions at the per-message and per-transaction costs measured beside the
    ceilings (no HTTP, no statement but one insert, no routing, encryption or logging):
    the messages' (aio-pika and RabbitMQ), the transactions' (SQLAlchemy over asyncpg,
    and PostgreSQL), and the two together."""
    rabbit, txn = ceiling["rabbitmq"], ceiling["transaction"]
    publish = sum(rabbit["cpu_ms_per_publish"].values())
    consume = sum(rabbit["cpu_ms_per_consume"].values())
    commit = txn["cpu_ms_client"] + txn["cpu_ms_postgresql"]
    messages = counts["events"] * publish + counts["deliveries_at_least"] * consume
    transactions = counts["write_transactions_at_least"] * commit
    return {
        "messages": round(messages, 2),
        "transactions": round(transactions, 2),
        "total": round(messages + transactions, 2),
    }


def at_a_quarter(step: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, float]:
    """The CPU, in cores, that a quarter of the raw confirmed-publish rate would take with
    the work per case of `step`: its floor's messages, its floor's transactions, and the
    load generator's measured share (what the benchmark's requests cost the client side,
    whatever the platform does)."""
    events_per_s = ceiling["rabbitmq"]["publish_per_s"] / 4
    cases_per_s = float(events_per_s / step["per_case"]["events"])
    floor = step["floor_cpu_ms_per_case"]

    def cores(ms: float) -> float:
        return round(ms * cases_per_s / 1000, 2)

    return {
        "events_per_s": round(events_per_s, 1),
        "cases_per_s": round(cases_per_s, 1),
        "floor_messages_cores": cores(floor["messages"]),
        "floor_transactions_cores": cores(floor["transactions"]),
        "floor_cores": cores(floor["total"]),
        "load_generator_cores": cores(step["cpu_ms_per_case"]["load generator"]),
        "machine_cores": os.cpu_count() or 0,
    }


async def step_figures(
    p: ProcessPlatform, load: Load, step: int, start: datetime, end: datetime
) -> dict[str, Any]:
    """Latencies and rates of a step, read from the services' databases."""
    audit = create_async_engine(p.databases["audit"])
    referral = create_async_engine(p.databases["referral"])
    try:
        async with audit.connect() as conn:
            assessed = {
                str(subject): t
                for subject, t in await conn.execute(
                    text("SELECT subject, time FROM log_entries WHERE type = 'icrs.needs.assessed'")
                )
            }
            to_log = [
                (appended - t).total_seconds()
                for t, appended in await conn.execute(
                    text("SELECT time, appended_at FROM log_entries WHERE time BETWEEN :a AND :b"),
                    {"a": start, "b": end},
                )
            ]
            appended = (
                await conn.execute(
                    text("SELECT count(*) FROM log_entries WHERE appended_at BETWEEN :a AND :b"),
                    {"a": start, "b": end},
                )
            ).scalar_one()
        async with referral.connect() as conn:
            created = {
                str(case_id): t
                for case_id, t in await conn.execute(
                    text("SELECT case_id, created_at FROM referrals WHERE attempt = 1")
                )
            }
    finally:
        await audit.dispose()
        await referral.dispose()
    mine = [c for c, s in load.cases.items() if s == step]
    to_inbox = [
        (created[c] - assessed[c]).total_seconds() for c in mine if c in created and c in assessed
    ]
    seconds = (end - start).total_seconds()
    return {
        "cases": len(mine),
        "cases_per_s": round(len(mine) / seconds, 1),
        "events_per_s": round(appended / seconds, 1),
        "referrals_in_inbox": len(to_inbox),
        "assessment_to_inbox_ms": quantiles(to_inbox),
        "event_to_audit_log_ms": quantiles(to_log),
    }


async def settle(p: ProcessPlatform, load: Load, within: float) -> float:
    """Seconds until every registered case has its referral and the log stops growing."""
    start = time.monotonic()
    referral = create_async_engine(p.databases["referral"])
    audit = create_async_engine(p.databases["audit"])
    last = -1
    try:
        while time.monotonic() - start < within:
            async with referral.connect() as conn:
                referred = (
                    await conn.execute(text("SELECT count(DISTINCT case_id) FROM referrals"))
                ).scalar_one()
            async with audit.connect() as conn:
                size = (await conn.execute(text("SELECT count(*) FROM log_entries"))).scalar_one()
            if referred >= len(load.cases) and size == last:
                return time.monotonic() - start
            last = size
            await asyncio.sleep(0.5)
        return float("inf")
    finally:
        await referral.dispose()
        await audit.dispose()


async def duplicates(p: ProcessPlatform) -> dict[str, int]:
    referral = create_async_engine(p.databases["referral"])
    audit = create_async_engine(p.databases["audit"])
    try:
        async with referral.connect() as conn:
            twice = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM (SELECT need_id FROM referrals WHERE attempt = 1"
                        " GROUP BY need_id HAVING count(*) > 1) d"
                    )
                )
            ).scalar_one()
        async with audit.connect() as conn:
            logged_twice = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM (SELECT event_id FROM log_entries"
                        " GROUP BY event_id HAVING count(*) > 1) d"
                    )
                )
            ).scalar_one()
            size = (await conn.execute(text("SELECT count(*) FROM log_entries"))).scalar_one()
    finally:
        await referral.dispose()
        await audit.dispose()
    return {"needs_referred_twice": twice, "events_logged_twice": logged_twice, "log_size": size}


def bench_platform(replicas: int, data_dir: Path) -> ProcessPlatform:
    """The four services as `icrs serve` processes, `replicas` each of referral and audit."""
    return ProcessPlatform(
        PG,
        AMQP,
        data_dir,
        replicas={"referral": replicas, "audit": replicas},
        env={"ICRS_LOG_LEVEL": "WARNING"},
    )


async def parties(client: PlatformClient) -> tuple[dict[str, str], dict[str, str]]:
    """A provider with a health service without a capacity, and a UN agency: the
    headers of the partner's system and of the agency's."""
    provider, partner = await client.organization(
        "Bench Clinic",
        "service_provider",
        ["referrals:respond", "services:manage"],
        child_safeguarding=True,
    )
    await client.publish_service(provider, partner)  # no capacity limit
    _, agency = await client.organization(
        "Bench Agency",
        "un_agency",
        ["cases:write", "cases:read", "referrals:read", "referrals:write"],
    )
    return partner, agency


async def run_platform(
    replicas: int,
    rates: list[float],
    step_seconds: float,
    data_dir: Path,
    ceiling: dict[str, Any],
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    async with bench_platform(replicas, data_dir) as p:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with p.client(limits=limits) as client:
            partner, agency = await parties(client)
            load = Load(client, agency, partner)
            answering = asyncio.create_task(load.answer())
            try:
                for step, rate in enumerate(rates):
                    begin = datetime.now(UTC)
                    cpu_before = cpu_seconds(p)
                    done_before = await tallies(p, load)
                    started, took = await load.run_step(step, rate, step_seconds)
                    end = datetime.now(UTC)
                    drain = await settle(p, load, within=120)
                    counts = per_case(done_before, await tallies(p, load), started)
                    cpu = {
                        name: round(1000 * (used - cpu_before.get(name, 0.0)) / max(started, 1), 1)
                        for name, used in cpu_seconds(p).items()
                    }
                    figures = await step_figures(p, load, step, begin, end)
                    figures |= {
                        "target_cases_per_s": rate,
                        "started": started,
                        "seconds": round(took, 1),
                        "failed_requests": load.failures,
                        "settled_after_s": round(drain, 1),
                        "cpu_ms_per_case": cpu,
                        "per_case": counts,
                        "floor_cpu_ms_per_case": floor_ms(counts, ceiling),
                        "load_average": os.getloadavg()[0],
                    }
                    steps.append(figures)
                    print(json.dumps(figures), flush=True)
                    inbox_p99 = figures["assessment_to_inbox_ms"]["p99"]
                    behind = took > step_seconds * 1.1 or figures["cases"] < 0.95 * started
                    if behind or inbox_p99 is None or inbox_p99 > LATENCY_LIMIT_S * 1000:
                        break
            finally:
                load.stop()
                await answering
            dupes = await duplicates(p)
    return {"replicas": replicas, "steps": steps, "accepted_by_partner": load.answered} | dupes


async def drain_run(replicas: int, cases: int, data_dir: Path) -> dict[str, Any]:
    """Scale-out, each service on the machine's CPUs alone: referral and audit are stopped
    while intake registers `cases` people; then intake and partners stop too, and referral
    runs alone with `replicas` processes until every need is referred; then audit alone,
    with `replicas` processes, until every event is logged. Rates are taken from the rows'
    own times (first to last), so start-up is not counted."""
    async with bench_platform(replicas, data_dir) as p:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with p.client(limits=limits) as client:
            partner, agency = await parties(client)
            await p.settled(within=120)
            await stop(p.processes("referral") + p.processes("audit"))
            load = Load(client, agency, partner)
            sem = asyncio.Semaphore(16)

            async def one() -> None:
                async with sem:
                    await load.one(0)

            await asyncio.gather(*(one() for _ in range(cases)))
        await until_published(p)
        await stop(p.processes("intake") + p.processes("partners"))

        async def all_referred() -> bool:
            return await count(p, "referral", "SELECT count(*) FROM referrals") >= cases

        referral_s = await run_alone(p, "referral", all_referred)
        await until_published(p)
        await stop(p.processes("referral"))
        written = await p.backlog()
        events = written.events - written.before_audit

        async def all_logged() -> bool:
            return await count(p, "audit", "SELECT size FROM log_head WHERE id = 1") >= events

        audit_from = datetime.now(UTC)
        audit_s = await run_alone(p, "audit", all_logged)
        referral = create_async_engine(p.databases["referral"])
        audit = create_async_engine(p.databases["audit"])
        try:
            async with referral.connect() as conn:
                made, first, last = (
                    await conn.execute(
                        text("SELECT count(*), min(created_at), max(created_at) FROM referrals")
                    )
                ).one()
            async with audit.connect() as conn:
                entries, a_first, a_last, batches = (
                    await conn.execute(
                        text(
                            "SELECT count(*), min(appended_at), max(appended_at),"
                            " count(DISTINCT appended_at) FROM log_entries"
                            " WHERE appended_at >= :start"
                        ),
                        {"start": audit_from},
                    )
                ).one()
        finally:
            await referral.dispose()
            await audit.dispose()
        dupes = await duplicates(p)
    return {
        "replicas": replicas,
        "cases": cases,
        "referrals_made": made,
        "referrals_per_s": round(made / max((last - first).total_seconds(), 1e-3), 1),
        "referral_seconds_with_start": round(referral_s, 1),
        "events_logged": entries,
        "events_logged_per_s": round(entries / max((a_last - a_first).total_seconds(), 1e-3), 1),
        "mean_audit_batch": round(entries / max(batches, 1), 1),
        "audit_seconds_with_start": round(audit_s, 1),
    } | dupes


async def stop(processes: list[ServiceProcess]) -> None:
    await asyncio.gather(*(asyncio.to_thread(s.stop) for s in processes))


async def until_published(p: ProcessPlatform) -> None:
    """Until every outbox row of the running services is published."""
    while (await p.backlog()).unsent:  # noqa: ASYNC110 - polls the databases
        await asyncio.sleep(0.5)


async def count(p: ProcessPlatform, service: str, sql: str) -> int:
    engine = create_async_engine(p.databases[service])
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql))).scalar_one())
    finally:
        await engine.dispose()


async def run_alone(
    p: ProcessPlatform, name: str, done: Callable[[], Awaitable[bool]], within: float = 900
) -> float:
    """Start `name`'s processes; seconds until `done()`."""
    began = time.monotonic()
    for process in p.processes(name):
        process.start()
    await asyncio.gather(*(s.ready() for s in p.processes(name)))
    while not await done():
        if time.monotonic() - began > within:
            raise TimeoutError(f"{name} did not drain its backlog in {within}s")
        await asyncio.sleep(0.2)
    return time.monotonic() - began


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="5,10,15,20,25,30")
    parser.add_argument("--step-seconds", type=float, default=20)
    parser.add_argument("--replicas", default="1,2", help="runs, by replicas of referral+audit")
    parser.add_argument("--ceiling-events", type=int, default=20000)
    parser.add_argument(
        "--drain-cases", type=int, default=1000, help="cases of the scale-out drain; 0: none"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/pipeline.json"))
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    load_at_start = os.getloadavg()[0]

    ceiling = {
        "rabbitmq": await raw_ceiling(args.ceiling_events, 200),
        "postgres": pgbench(10),
        "transaction": await transaction_floor(),
    }
    print(json.dumps(ceiling), flush=True)
    runs = []
    for replicas in (int(r) for r in args.replicas.split(",")):
        data_dir = Path(tempfile.mkdtemp(prefix="icrs-bench-"))
        try:
            runs.append(await run_platform(replicas, rates, args.step_seconds, data_dir, ceiling))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    drains = []
    for replicas in (1, 2) if args.drain_cases else ():
        data_dir = Path(tempfile.mkdtemp(prefix="icrs-bench-"))
        try:
            drains.append(await drain_run(replicas, args.drain_cases, data_dir))
            print(json.dumps(drains[-1]), flush=True)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    best_step = max(
        (s for run in runs for s in run["steps"]), key=lambda s: s["events_per_s"], default=None
    )
    best = best_step["events_per_s"] if best_step else 0.0
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
        },
        "ceiling": ceiling,
        "runs": runs,
        "drain": drains,
        "best_events_per_s": best,
        "best_events_vs_raw_confirmed_publish": round(
            best / ceiling["rabbitmq"]["publish_per_s"], 4
        ),
        "a_quarter_of_raw_publish_would_need": at_a_quarter(best_step, ceiling)
        if best_step
        else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
