"""Each service's peak memory with 100,000 cases through the platform.

The four services run as `icrs serve` processes (ProcessPlatform: one process each, a new
database each, RabbitMQ). A government organization imports a CSV file of 100,000 people
(`POST /v1/imports`, streamed over TCP); every case registered sends `case.registered`,
which the referral service takes into its view and the audit service into its log. An
import records no needs and no consents, so for a share of the cases (`--referred`,
listed by `GET /v1/cases`) the organization then records, by the API, a consent to
referral and a health need: the referral service routes each to a provider's health
service, which sends `referral.created` back to intake and to the audit log. The run
ends when the platform has settled: every event published, the audit log holding every
one, no consumer moving; then the provider's inbox must hold every referral and the
audit log's signed checkpoint its every entry.

Peak RSS is each process's VmHWM (/proc/<pid>/status) at the end; VmRSS is sampled every
few seconds for a curve.

    uv run python bench/memory.py [--cases 100000] [--referred 10000] [--every 5] \\
        [--out bench/results/memory.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from intake_import import cells, chunks, write_file

from icrs.processes import (
    Backlog,
    PlatformClient,
    ProcessPlatform,
    assessment_body,
    consent_body,
    family_name,
)
from icrs_referral.consumers import BINDINGS
from icrs_shared.events.envelope import routing_key

AMQP = os.environ.get("ICRS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get(
    "ICRS_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
SERVICE_AREAS = ("SO11", "SO22", "SO31")
MIB = 2**20


def case_row(i: int) -> dict[str, str]:
    """An adult (no minor, so no need is raised by the import itself), every row good, each
    with a family name of their own (no probable duplicates)."""
    return cells(i, family_name=family_name, mixed=False)


class Token:
    """A client's bearer token, taken again before it runs out (tokens last 10 minutes)."""

    def __init__(self, client: PlatformClient, client_id: str, secret: str) -> None:
        self.client, self.client_id, self.secret = client, client_id, secret
        self._headers: dict[str, str] = {}
        self._taken = 0.0

    async def headers(self) -> dict[str, str]:
        if time.monotonic() - self._taken > 300:
            self._headers = await self.client.token(self.client_id, self.secret)
            self._taken = time.monotonic()
        return self._headers


class Sampler:
    """VmRSS of every service process every `every` seconds, with the phase it fell in
    and how far the consumers had got."""

    def __init__(self, plat: ProcessPlatform, every: float) -> None:
        self.platform = plat
        self.processes = {p.name: psutil.Process(p.pid) for p in plat.all_processes()}
        self.every = every
        self.phase = "start"
        self.began = time.monotonic()
        self.samples: list[tuple[float, str, dict[str, float]]] = []
        self.progress: list[tuple[float, int, int, int]] = []
        self.phases: list[tuple[str, float, dict[str, float]]] = []
        self.probes: list[tuple[float, int, float]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def sample(self) -> dict[str, float]:
        rss = {n: round(p.memory_info().rss / MIB, 1) for n, p in self.processes.items()}
        self.samples.append((round(time.monotonic() - self.began, 1), self.phase, rss))
        return rss

    def curve(self) -> dict[str, Any]:
        """Column by column: seconds, phase, and each process's VmRSS in MiB."""
        return {
            "t_s": [t for t, _, _ in self.samples],
            "phase": [p for _, p, _ in self.samples],
            "rss_mib": {n: [rss[n] for _, _, rss in self.samples] for n in self.processes},
        }

    def consumed(self) -> dict[str, Any]:
        """Column by column: seconds, events written, in the audit log, taken into the
        referral service's view."""
        return {
            key: [row[i] for row in self.progress]
            for i, key in enumerate(("t_s", "events_written", "audit_logged", "referral_view"))
        }

    def inbox_gets(self) -> dict[str, Any]:
        """Column by column: seconds, status and milliseconds of the provider's
        `GET /v1/referrals/inbox?limit=50`, one at a time."""
        return {
            key: [row[i] for row in self.probes] for i, key in enumerate(("t_s", "status", "ms"))
        }

    def inbox_get_summary(self) -> dict[str, Any]:
        """By phase: how many inbox reads, their median and slowest time, how many failed."""
        starts = [(start, name) for name, start, _ in self.phases]
        by_phase: dict[str, list[tuple[int, float]]] = {}
        for at, status, ms in self.probes:
            name = next((n for start, n in reversed(starts) if start <= at), "start")
            by_phase.setdefault(name, []).append((status, ms))
        return {
            name: {
                "reads": len(rows),
                "median_ms": statistics.median(ms for _, ms in rows),
                "max_ms": max(ms for _, ms in rows),
                "not_200": sum(status != 200 for status, _ in rows),
            }
            for name, rows in by_phase.items()
        }

    def enter(self, phase: str) -> None:
        """A new phase: its start, and the CPU time each process has used until then."""
        self.phase = phase
        cpu = {n: sum(p.cpu_times()[:2]) for n, p in self.processes.items()}
        self.phases.append((phase, time.monotonic() - self.began, cpu))
        print(f"{self.phases[-1][1]:>7.1f}s {phase}", flush=True)

    def timings(self) -> dict[str, Any]:
        """Each phase's start, length and the cores each process kept busy in it."""
        out = {}
        for (name, start, cpu), (_, end, cpu_end) in itertools.pairwise(self.phases):
            out[name] = {
                "started_at_s": round(start, 1),
                "seconds": round(end - start, 1),
                "cpu_cores": {n: round((cpu_end[n] - cpu[n]) / (end - start), 2) for n in cpu},
            }
        return out

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except psutil.NoSuchProcess:
                return
            with contextlib.suppress(OSError, asyncpg.TooManyConnectionsError):
                at = round(time.monotonic() - self.began, 1)
                b = await self.platform.backlog()
                self.progress.append((at, b.events, b.logged, b.consumed.get("referral/view", 0)))
            await asyncio.sleep(self.every)

    async def _probe(self, referral: httpx.AsyncClient, token: Token) -> None:
        while True:
            headers = await token.headers()
            at = time.monotonic()
            try:
                r = await referral.get("/v1/referrals/inbox", params={"limit": 50}, headers=headers)
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            ms = round((time.monotonic() - at) * 1000, 1)
            self.probes.append((round(at - self.began, 1), status, ms))
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run()))

    def start_probe(self, referral: httpx.AsyncClient, token: Token) -> None:
        """Read the provider's inbox now and then, for its latency while events queue."""
        self._tasks.append(asyncio.create_task(self._probe(referral, token)))

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()


def peak_rss(pid: int) -> dict[str, float]:
    """VmHWM (the peak) and VmRSS of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


async def run_import(
    intake: httpx.AsyncClient, token: Token, path: Path, cases: int
) -> dict[str, Any]:
    started = time.perf_counter()
    headers = await token.headers() | {"Content-Type": "text/csv"}
    r = await intake.post("/v1/imports", content=chunks(path), headers=headers)
    assert r.status_code == 202, r.text
    while True:
        await asyncio.sleep(2)
        polled = await intake.get(r.headers["location"], headers=await token.headers())
        assert polled.status_code == 200, polled.text
        report = polled.json()
        if report["status"] != "running":
            break
    seconds = time.perf_counter() - started
    assert report["status"] == "completed", report
    assert report["created"] == cases, report
    return {
        "seconds": round(seconds, 1),
        "rows_per_s": round(cases / seconds, 1),
        **{k: report[k] for k in ("rows", "created", "rejected")},
    }


async def case_ids(intake: httpx.AsyncClient, token: Token, count: int) -> list[str]:
    """The organization's newest `count` cases."""
    ids: list[str] = []
    cursor = None
    while len(ids) < count:
        params: dict[str, Any] = {"limit": min(200, count - len(ids))}
        if cursor:
            params["cursor"] = cursor
        r = await intake.get("/v1/cases", params=params, headers=await token.headers())
        r.raise_for_status()
        ids += [c["id"] for c in r.json()["items"]]
        if (cursor := r.json()["next_cursor"]) is None:
            break
    return ids


async def refer_all(
    intake: httpx.AsyncClient, token: Token, ids: list[str], workers: int
) -> dict[str, Any]:
    """A consent to referral and a health need for each case, `workers` at a time."""
    started = time.perf_counter()
    queue = list(reversed(ids))

    async def worker() -> None:
        while queue:
            case_id = queue.pop()
            headers = await token.headers()
            r = await intake.post(
                f"/v1/cases/{case_id}/consents", json=consent_body("health"), headers=headers
            )
            assert r.status_code == 201, r.text
            r = await intake.post(
                f"/v1/cases/{case_id}/assessments",
                json=assessment_body("health"),
                headers=headers,
            )
            assert r.status_code == 201, r.text
            if len(queue) % 1000 == 0:
                print(f"  {len(ids) - len(queue)} cases referred", flush=True)

    await asyncio.gather(*(worker() for _ in range(workers)))
    seconds = time.perf_counter() - started
    return {
        "cases": len(ids),
        "seconds": round(seconds, 1),
        "requests_per_s": round(2 * len(ids) / seconds, 1),
    }


async def inbox_count(referral: httpx.AsyncClient, token: Token) -> int:
    count, cursor = 0, None
    while True:
        params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
        r = await referral.get("/v1/referrals/inbox", params=params, headers=await token.headers())
        r.raise_for_status()
        count += len(r.json()["items"])
        if (cursor := r.json()["next_cursor"]) is None:
            return count


async def checkpoint_size(audit: httpx.AsyncClient, token: Token, want: int) -> int:
    """The size of the latest signed checkpoint, once it reaches `want` (or 60 s pass)."""
    deadline = time.monotonic() + 60
    while True:
        r = await audit.get("/v1/log/checkpoint", headers=await token.headers())
        r.raise_for_status()
        size = int(r.text.splitlines()[1])
        if size >= want or time.monotonic() > deadline:
            return size
        await asyncio.sleep(1)


def matches(binding: str, key: str) -> bool:
    """AMQP topic matching: `*` one word, `#` any number of words."""

    def match(b: list[str], k: list[str]) -> bool:
        if not b:
            return not k
        if b[0] == "#":
            return any(match(b[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and b[0] in ("*", k[0]) and match(b[1:], k[1:])

    return match(binding.split("."), key.split("."))


def routed_to_view(backlog: Backlog) -> int:
    """Events the referral service's view is bound to."""
    return sum(
        n
        for event_type, n in backlog.written.items()
        if any(matches(b, routing_key(event_type)) for b in BINDINGS)
    )


async def main(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="icrs-bench-memory-"))
    path = work / "cases.csv"
    write_file(path, args.cases, case_row)
    result: dict[str, Any] = {}
    try:
        async with (
            ProcessPlatform(PG, AMQP, work / "platform") as plat,
            plat.client(timeout=120) as client,
        ):
            pids = {p.name: p.pid or 0 for p in plat.all_processes()}
            sampler = Sampler(plat, args.every)
            idle = sampler.sample()
            sampler.start()
            sampler.enter("setup")
            _, client_id, secret = await client.organization_client(
                "Registry", "government", ["cases:import", "cases:write", "cases:read"]
            )
            registry = Token(client, client_id, secret)
            provider, client_id, secret = await client.organization_client(
                "Clinic",
                "service_provider",
                ["referrals:respond", "services:manage"],
                child_safeguarding=True,
            )
            clinic = Token(client, client_id, secret)
            await client.publish_service(provider, await clinic.headers(), areas=SERVICE_AREAS)
            _, client_id, secret = await client.organization_client(
                "Auditors", "auditor", ["audit:read"]
            )
            auditor = Token(client, client_id, secret)
            # The referral service knows the provider before any need reaches it.
            await plat.settled()
            sampler.start_probe(client.to("referral"), clinic)
            intake = client.to("intake")

            sampler.enter("import")
            result["import"] = await run_import(intake, registry, path, args.cases)
            print(json.dumps(result["import"]), flush=True)
            sampler.enter("refer")
            ids = await case_ids(intake, registry, args.referred)
            result["refer"] = await refer_all(intake, registry, ids, args.workers)
            print(json.dumps(result["refer"]), flush=True)
            sampler.enter("settle")
            backlog = await plat.settled(within=4 * 3600, quiet=5)
            sampler.enter("settled")
            sampler.stop()
            final = sampler.sample()
            peaks = {name: peak_rss(pid) for name, pid in pids.items()}

            inbox = await inbox_count(client.to("referral"), clinic)
            checkpoint = await checkpoint_size(client.to("audit"), auditor, backlog.logged)
            result["flowed"] = {
                "events_written_by_type": dict(sorted(backlog.written.items())),
                "events_written": backlog.events,
                "published_before_the_platform_was_up": backlog.before_audit,
                "audit_log_size": backlog.logged,
                "audit_log_has_every_event": backlog.logged == backlog.events,
                "audit_checkpoint_size": checkpoint,
                "consumed_by_consumer": backlog.consumed,
                "referral_view_bound_events": routed_to_view(backlog),
                "referrals_in_the_inbox": inbox,
                "every_referred_case_in_the_inbox": inbox == len(ids),
            }
            result["rss_mib"] = {
                name: {"idle": idle[name], "peak_vmhwm": peaks[name]["VmHWM"], "end": final[name]}
                for name in pids
            }
            curve, timings = sampler.curve(), sampler.timings()
            consumed, inbox_gets = sampler.consumed(), sampler.inbox_gets()
            result["inbox_get_while_loaded"] = sampler.inbox_get_summary()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cases": args.cases,
        "referred": args.referred,
        "total_seconds": round(time.perf_counter() - began, 1),
        "phases": timings,
        **result,
        "rss_curve_every_s": args.every,
        "rss_curve": curve,
        "consumers_curve": consumed,
        "inbox_get_curve": inbox_gets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # The curves' columns one to a line.
    text = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]",
        lambda m: "[" + " ".join(m.group(1).split()) + "]",
        json.dumps(out, indent=2),
    )
    args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in out.items() if not k.endswith("_curve")}, indent=2))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000, help="imported")
    parser.add_argument(
        "--referred", type=int, default=10_000, help="of them given a consent and a need"
    )
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients referring")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--out", type=Path, default=Path("bench/results/memory.json"))
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
