"""Requests per second and latency of two routes of the platform under concurrent clients,
beside a bare FastAPI endpoint that inserts one row per request (the ceiling):

- `POST /v1/cases` (intake): every request a person of their own, so the probable-
  duplicate check looks but never finds one;
- `GET /v1/referrals/inbox?limit=50` (referral): a provider's inbox holding 200 referrals;
- `POST /items` (bare): FastAPI, one SQLAlchemy async engine, one INSERT of the request's
  JSON body into a table of a database of its own, on the same PostgreSQL server.

The services run as `icrs serve` processes (ProcessPlatform: one process each, a new
database each, RabbitMQ); the bare app runs in a subprocess under the same uvicorn the
same way (one worker, asyncio loop, h11, no access log). Clients are httpx over TCP from
this process, a connection each, back to back, each level for a fixed time after a
warm-up; the bare app is measured first, before the platform starts.

    uv run python bench/api.py [--clients 1,8,32] [--seconds 10] [--warmup 2] \\
        [--referrals 200] [--out bench/results/api.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import uvicorn
from fastapi import FastAPI, Request
from sqlalchemy import JSON, Column, DateTime, MetaData, Table, Uuid
from sqlalchemy.ext.asyncio import create_async_engine

from icrs.processes import ProcessPlatform, case_body, free_port
from icrs_shared.testing.databases import create_database, drop_database

AMQP = os.environ.get("ICRS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get(
    "ICRS_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
#: People registered by the benchmark are numbered from here: the inbox's are below.
FIRST_PERSON = 100_000

#: The request a client sends next, given the next number.
Send = Callable[[httpx.AsyncClient, int], httpx.Request]
#: The platform's routes measured, as `platform_routes` names their results.
MEASURED = ("post_cases", "get_inbox")


@dataclass(frozen=True)
class Route:
    """A route measured: `send` builds the request a client sends next; a request that
    gets `ok` succeeded; `between` is awaited after each number of clients."""

    name: str
    url: str
    send: Send
    ok: int
    between: Callable[[], Awaitable[object]] | None = None


def bare_app(database_url: str) -> FastAPI:
    """The ceiling: parse a JSON body, insert it as one row, answer 201."""
    items = Table(
        "items",
        MetaData(),
        Column("id", Uuid, primary_key=True),
        Column("body", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The pool the services' Database makes.
        engine = create_async_engine(
            database_url, pool_size=10, max_overflow=10, pool_pre_ping=True
        )
        async with engine.begin() as conn:
            await conn.run_sync(items.metadata.create_all)
        app.state.engine = engine
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/items", status_code=201)
    async def insert(body: dict[str, Any], request: Request) -> dict[str, str]:
        row_id = uuid.uuid4()
        async with request.app.state.engine.begin() as conn:
            await conn.execute(
                items.insert().values(id=row_id, body=body, created_at=datetime.now(UTC))
            )
        return {"id": str(row_id)}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def serve_bare(database_url: str, port: int) -> None:
    """As `icrs serve` runs a service (icrs.cli._run)."""
    config = uvicorn.Config(
        bare_app(database_url),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    asyncio.run(uvicorn.Server(config).serve())


async def wait_ready(url: str, process: asyncio.subprocess.Process, within: float = 30) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        while True:
            if process.returncode is not None:
                raise RuntimeError("the bare app exited")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the bare app did not start")
            await asyncio.sleep(0.2)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        times = psutil.Process(pid).cpu_times()
        out[name] = times.user + times.system
    return out


async def measure(
    route: Route, args: argparse.Namespace, numbers: Iterator[int], pids: dict[str, int]
) -> list[dict[str, Any]]:
    """Each number of clients in turn, with the CPU time of the processes `pids`."""
    out = []
    for clients in args.clients:
        result = await load(
            route,
            clients=clients,
            seconds=args.seconds,
            warmup=args.warmup,
            numbers=numbers,
            pids=pids,
        )
        print(route.name, json.dumps(result), flush=True)
        out.append(result)
        if route.between is not None:
            await route.between()
    return out


async def load(
    route: Route,
    *,
    clients: int,
    seconds: float,
    warmup: float,
    numbers: Iterator[int],
    pids: dict[str, int],
) -> dict[str, Any]:
    """`clients` tasks sending back to back; what completed in the window after warm-up."""
    load_before = os.getloadavg()[0]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    cpu_start: dict[str, float] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=route.url, limits=limits, timeout=60) as http:
        start = time.perf_counter() + warmup
        end = start + seconds

        async def client() -> None:
            while (sent := time.perf_counter()) < end:
                r = await http.send(route.send(http, next(numbers)))
                done = time.perf_counter()
                if start <= done <= end:
                    latencies.append(done - sent)
                    statuses[r.status_code] += 1

        async def mark() -> None:
            await asyncio.sleep(warmup)
            cpu_start.update(cpu_seconds(pids))

        await asyncio.gather(mark(), *(client() for _ in range(clients)))
        cpu_end = cpu_seconds(pids)
        window = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    good = statuses[route.ok]
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": len(latencies),
        "rps": round(good / seconds, 1),
        "p50_ms": round(cuts[49] * 1000, 1),
        "p95_ms": round(cuts[94] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": len(latencies) - good,
        # CPU each process used in the window (1.0 = one core busy), this one included.
        "cpu_cores": {name: round((cpu_end[name] - cpu_start[name]) / window, 2) for name in pids},
        "load_average_1min_before": round(load_before, 2),
    }


async def bare(args: argparse.Namespace, numbers: Iterator[int]) -> list[dict[str, Any]]:
    url = await create_database(PG, prefix="icrs_bench_bare")
    port = free_port()
    command = [sys.executable, __file__, "--serve-bare", url, "--port", str(port)]
    process = await asyncio.create_subprocess_exec(*command, start_new_session=True)
    try:
        await wait_ready(f"http://127.0.0.1:{port}", process)

        def send(http: httpx.AsyncClient, number: int) -> httpx.Request:
            return http.build_request("POST", "/items", json=case_body(number, external_id=False))

        route = Route("bare", f"http://127.0.0.1:{port}", send, ok=201)
        pids = {"bare": process.pid, "bench": os.getpid()}
        return await measure(route, args, numbers, pids)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        await drop_database(url)


async def platform_routes(args: argparse.Namespace, numbers: Iterator[int]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="icrs-bench-api-"))
    out: dict[str, Any] = {}
    try:
        async with ProcessPlatform(PG, AMQP, work) as plat, plat.client() as client:
            _, agency_id, agency_secret = await client.organization_client(
                "Bench agency", "un_agency", ["cases:write", "cases:read"]
            )
            provider, provider_id, provider_secret = await client.organization_client(
                "Bench clinic",
                "service_provider",
                ["referrals:respond", "services:manage"],
                child_safeguarding=True,
            )
            agency = await client.token(agency_id, agency_secret)
            clinic = await client.token(provider_id, provider_secret)
            await client.publish_service(provider, clinic, areas=("SO11",))
            # The referral service knows the provider before any need reaches it.
            await plat.settled()

            started = time.perf_counter()
            gate = asyncio.Semaphore(8)

            async def refer(number: int) -> None:
                async with gate:
                    await client.refer(agency, number)

            await asyncio.gather(*(refer(n) for n in range(1, args.referrals + 1)))
            inbox = await inbox_size(client.to("referral"), clinic, args.referrals)
            await plat.settled()
            out["inbox"] = {"referrals": inbox, "filled_in_s": round(time.perf_counter() - started)}
            pids = {p.name: p.pid or 0 for p in plat.all_processes()} | {"bench": os.getpid()}

            def new_case(http: httpx.AsyncClient, number: int) -> httpx.Request:
                body = case_body(FIRST_PERSON + number, external_id=False)
                return http.build_request("POST", "/v1/cases", json=body, headers=agency)

            def read_inbox(http: httpx.AsyncClient, _: int) -> httpx.Request:
                params = {"limit": args.page}
                return http.build_request(
                    "GET", "/v1/referrals/inbox", params=params, headers=clinic
                )

            post_cases = Route(
                "POST /v1/cases",
                plat.url("intake"),
                new_case,
                ok=201,
                # The events of one level are consumed before the next one starts.
                between=plat.settled,
            )
            get_inbox = Route("GET /v1/referrals/inbox", plat.url("referral"), read_inbox, ok=200)

            # Fresh tokens: those above may be near their end (they last 10 minutes).
            agency.update(await client.token(agency_id, agency_secret))
            out["post_cases"] = await measure(post_cases, args, numbers, pids)
            clinic.update(await client.token(provider_id, provider_secret))
            out["get_inbox"] = await measure(get_inbox, args, numbers, pids)
            backlog = await plat.backlog()
            out["events_written"] = backlog.written
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


async def inbox_size(referral: httpx.AsyncClient, headers: dict[str, str], want: int) -> int:
    """Wait until the inbox holds `want` referrals; how many it holds."""
    deadline = time.monotonic() + 300
    while True:
        count, cursor = 0, None
        while True:
            params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            r = await referral.get("/v1/referrals/inbox", params=params, headers=headers)
            r.raise_for_status()
            count += len(r.json()["items"])
            if (cursor := r.json()["next_cursor"]) is None:
                break
        if count >= want or time.monotonic() > deadline:
            return count
        await asyncio.sleep(1)


def ratios(routes: list[dict[str, Any]], ceiling: list[dict[str, Any]]) -> dict[str, float]:
    by_clients = {c["clients"]: c["rps"] for c in ceiling}
    return {str(r["clients"]): round(r["rps"] / by_clients[r["clients"]], 3) for r in routes}


async def server_settings() -> dict[str, str]:
    conn = await asyncpg.connect(PG.replace("+asyncpg", ""))
    try:
        names = ("server_version", "synchronous_commit", "fsync", "shared_buffers")
        return {name: await conn.fetchval(f"SHOW {name}") for name in names}
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    load_start = os.getloadavg()
    numbers = itertools.count()
    ceiling = await bare(args, numbers)
    routes = await platform_routes(args, numbers)
    best = max(c["rps"] for c in ceiling)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "uvicorn": uvicorn.__version__,
            "httpx": httpx.__version__,
            "postgresql": await server_settings(),
        },
        "load_average_at_start": [round(x, 2) for x in load_start],
        "total_seconds": round(time.perf_counter() - began, 1),
        "seconds_per_level": args.seconds,
        "warmup_seconds": args.warmup,
        "inbox_page_limit": args.page,
        "bare_insert": ceiling,
        **routes,
        "rps_ratio_to_bare_insert": {
            **{key: ratios(routes[key], ceiling) for key in MEASURED},
            **{
                f"{key}_best_to_bare_best": round(max(r["rps"] for r in routes[key]) / best, 3)
                for key in MEASURED
            },
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 32]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per level")
    parser.add_argument("--warmup", type=float, default=2.0, help="not measured, per level")
    parser.add_argument("--referrals", type=int, default=200, help="in the inbox read")
    parser.add_argument("--page", type=int, default=50, help="the inbox's page limit")
    parser.add_argument("--out", type=Path, default=Path("bench/results/api.json"))
    parser.add_argument("--serve-bare", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.serve_bare:
        serve_bare(arguments.serve_bare, arguments.port)
    else:
        asyncio.run(main(arguments))
