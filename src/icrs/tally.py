"""What a run of cases left behind, counted from outside once the platform is quiet:
every case registered once and referred once, every event the services published in
the audit log exactly once, a log that verifies, and no message left in a queue.

    parties = await Parties.register(client)
    reckoner = Reckoner(platform, client, parties, amqp_url=..., queues=...)
    tally = await reckoner.settle(stream.cases, scenario="kill -9")
    print(tally.line())
    assert tally.problems == []
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from icrs_audit.note import Verifier
from icrs_audit.verify import verify_remote
from icrs_shared.bus import RabbitBus
from icrs_shared.testing.broker import QueueReader, QueueState

from .processes import ORDER, PlatformClient, ProcessPlatform

#: What the log must hold for every case of the stream.
CASE_EVENTS = ("icrs.case.registered", "icrs.needs.assessed", "icrs.referral.created")


@dataclass(frozen=True)
class Parties:
    """The organizations a run needs, each with a token: a provider publishing a health
    service, a requester registering cases, an auditor reading the log."""

    provider_org: str
    provider: dict[str, str]
    requester_org: str
    requester: dict[str, str]
    auditor: dict[str, str]

    @classmethod
    async def register(cls, client: PlatformClient) -> Parties:
        provider_org, provider = await client.organization(
            "Hope Clinic", "service_provider", ["referrals:respond", "services:manage"]
        )
        await client.publish_service(provider_org, provider, capacity=1_000_000)
        requester_org, requester = await client.organization(
            "DDR Commission", "ngo", ["cases:write", "cases:read", "referrals:read"]
        )
        _, auditor = await client.organization("Programme audit", "auditor", ["audit:read"])
        return cls(provider_org, provider, requester_org, requester, auditor)


@dataclass
class Tally:
    scenario: str
    sent: int = 0
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    parked: int = 0
    #: Events the services published (their outboxes), and entries of the audit log.
    events: int = 0
    logged: int = 0
    problems: list[str] = field(default_factory=list)
    waited: float = 0.0
    #: What settling waited for, and from when (seconds from its start).
    waits: list[tuple[float, str]] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"[{self.scenario}] sent={self.sent} delivered={self.delivered} "
            f"duplicated={self.duplicated} lost={self.lost} parked={self.parked} "
            f"(events={self.events} logged={self.logged}, settled in {self.waited:.1f}s)"
        )

    def report(self) -> str:
        waits = [f"  {at:5.1f}s waiting for {what}" for at, what in self.waits]
        return "\n".join([self.line(), *waits, *(f"  PROBLEM: {p}" for p in self.problems)])


class Reckoner:
    """Counts what a platform did with the cases it was sent. `queues` lists the broker's
    queues of the platform's namespace (with `rabbitmqctl`); without it, only the parking
    queues are read, over AMQP."""

    def __init__(
        self,
        platform: ProcessPlatform,
        client: PlatformClient,
        parties: Parties,
        *,
        amqp_url: str,
        queues: QueueReader | None = None,
    ) -> None:
        self.platform = platform
        self.client = client
        self.parties = parties
        self.amqp_url = amqp_url
        self.queues = queues

    async def settle(
        self, cases: Mapping[int, str], *, scenario: str, within: float = 120.0
    ) -> Tally:
        """Wait until the platform is done with `cases` (or `within` runs out), then count."""
        started = time.monotonic()
        waits: list[tuple[float, str]] = []
        waiting: str | None = "?"
        while time.monotonic() - started < within:
            waiting = await self.waiting_for(cases)
            if waiting is None:
                break
            if not waits or _kind(waits[-1][1]) != _kind(waiting):
                waits.append((time.monotonic() - started, waiting))
            await asyncio.sleep(0.5)
        tally = await self.count(cases, scenario=scenario)
        tally.waited = time.monotonic() - started
        tally.waits = waits
        if waiting is not None:
            tally.problems.insert(0, f"not settled in {within}s: still {waiting}")
        return tally

    async def waiting_for(self, cases: Mapping[int, str]) -> str | None:
        """What the platform has yet to do, cheapest check first; None when it is quiet."""
        events, unsent = await self.published()
        if unsent:
            return f"{unsent} events to publish"
        signed = await self.checkpoint_size()
        if signed < len(events):
            return f"the audit log's checkpoint at {signed} of {len(events)} events"
        referred = await self.referrals()
        waiting = [c for c in cases.values() if not referred[c]]
        if waiting:
            return f"{len(waiting)} cases without a referral"
        if self.queues is not None:
            busy = [q for q in await self.queues() if not _parking(q) and q.messages]
            if busy:
                return f"messages in {', '.join(f'{q.name} ({q.messages})' for q in busy)}"
        return None

    async def count(self, cases: Mapping[int, str], *, scenario: str) -> Tally:
        tally = Tally(scenario, sent=len(cases))
        problems = tally.problems
        await self._count_referrals(tally, cases)
        await self._check_registrations(problems, cases)
        events, unsent = await self.published()
        tally.events = len(events)
        if unsent:
            problems.append(f"{unsent} events never published from the outboxes")
        logged = await self.log_entries()
        tally.logged = len(logged)
        _check_log(problems, events, logged, cases)
        await self._verify_log(problems)
        await self._check_queues(tally)
        await self._check_ready(problems)
        return tally

    # what the services hold ------------------------------------------------------

    async def published(self) -> tuple[set[str], int]:
        """Every event id the services wrote to their outboxes, and how many are unsent."""
        ids: set[str] = set()
        unsent = 0
        for name in ORDER:
            url = make_url(self.platform.databases[name]).set(drivername="postgresql")
            conn = await asyncpg.connect(url.render_as_string(hide_password=False))
            try:
                rows = await conn.fetch("SELECT event_id, sent_at IS NULL AS unsent FROM outbox")
            finally:
                await conn.close()
            ids.update(str(r["event_id"]) for r in rows)
            unsent += sum(1 for r in rows if r["unsent"])
        return ids, unsent

    async def referrals(self) -> Counter[str]:
        """The provider's inbox: how many referrals each case has."""
        per_case: Counter[str] = Counter()
        for item in await self._pages("referral", "/v1/referrals/inbox", self.parties.provider):
            per_case[str(item["case_id"])] += 1
        return per_case

    async def checkpoint_size(self) -> int:
        r = await self.client.to("audit").get("/v1/log/checkpoint", headers=self.parties.auditor)
        if r.status_code == 404:
            return 0
        r.raise_for_status()
        return int(r.text.split("\n")[1])

    async def log_entries(self) -> list[dict[str, Any]]:
        """Every entry's event, in index order."""
        audit = self.client.to("audit")
        events: list[dict[str, Any]] = []
        while True:
            r = await audit.get(
                "/v1/log/entries", params={"start": len(events)}, headers=self.parties.auditor
            )
            r.raise_for_status()
            items = r.json()["items"]
            events += [item["event"] for item in items]
            if not items or r.json()["next_cursor"] is None:
                return events

    async def _pages(self, service: str, path: str, headers: dict[str, str]) -> list[Any]:
        items: list[Any] = []
        params: dict[str, Any] = {"limit": 200}
        while True:
            r = await self.client.to(service).get(path, params=params, headers=headers)
            r.raise_for_status()
            items += r.json()["items"]
            if not r.json().get("next_cursor"):
                return items
            params["cursor"] = r.json()["next_cursor"]

    # the checks ----------------------------------------------------------------------

    async def _count_referrals(self, tally: Tally, cases: Mapping[int, str]) -> None:
        referred = await self.referrals()
        tally.delivered = sum(referred[c] for c in cases.values())
        tally.duplicated = sum(1 for c in cases.values() if referred[c] > 1)
        tally.lost = sum(1 for c in cases.values() if referred[c] == 0)
        if tally.duplicated:
            tally.problems.append(f"{tally.duplicated} cases referred more than once")
        if tally.lost:
            tally.problems.append(f"{tally.lost} cases never referred")

    async def _check_registrations(self, problems: list[str], cases: Mapping[int, str]) -> None:
        """Each person of the stream registered once, as the case the stream was told."""
        found = await self._pages("intake", "/v1/cases", self.parties.requester)
        by_person: dict[str, list[str]] = {}
        for case in found:
            by_person.setdefault(str(case["external_id"]), []).append(str(case["id"]))
        for number, case_id in cases.items():
            registered = by_person.get(f"load-{number}", [])
            if registered != [case_id]:
                problems.append(f"person {number} is registered as {registered}, not [{case_id}]")

    async def _verify_log(self, problems: list[str]) -> None:
        """What `icrs audit verify` checks: the signature, and the root from every entry."""
        audit = self.platform.url("audit")
        async with httpx.AsyncClient(
            base_url=audit, headers=self.parties.auditor, timeout=30
        ) as http:
            key = await http.get("/v1/log/key")
            key.raise_for_status()
            report = await verify_remote(http, Verifier(key.json()["verifier"]))
        if not report.ok:
            problems.append("the audit log does not verify:\n" + report.text())

    async def _check_ready(self, problems: list[str]) -> None:
        """Every service came back: running, its database and the broker reachable."""
        for process in self.platform.all_processes():
            try:
                async with httpx.AsyncClient(base_url=process.url, timeout=5) as http:
                    answer = str((await http.get("/readyz")).status_code)
            except httpx.HTTPError as exc:
                answer = type(exc).__name__
            if answer != "200":
                problems.append(f"{process.name} (pid {process.pid}) is not ready: {answer}")

    async def _check_queues(self, tally: Tally) -> None:
        if self.queues is not None:
            for q in await self.queues():
                if not _parking(q) and q.messages:
                    tally.problems.append(
                        f"queue {q.name} holds {q.ready} ready, {q.unacked} unacked messages"
                    )
        bus = RabbitBus(self.amqp_url, namespace=self.platform.namespace)
        await bus.start()
        try:
            for service in ORDER:
                for parked in await bus.parked(service):
                    tally.parked += 1
                    reason = parked.reason if parked.reason != "unknown" else None
                    tally.problems.append(
                        f"{service} parked {parked.event_type} {parked.event_id} from "
                        f"{parked.consumer or '?'}: {reason or 'WITHOUT A REASON'}"
                    )
        finally:
            await bus.close()


def _kind(waiting: str) -> str:
    return re.sub(r"\d+", "#", waiting)


def _parking(queue: QueueState) -> bool:
    return queue.name.endswith(".parking")


def _check_log(
    problems: list[str],
    events: set[str],
    logged: list[dict[str, Any]],
    cases: Mapping[int, str],
) -> None:
    ids = Counter(str(e["id"]) for e in logged)
    twice = [i for i, n in ids.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} events are in the audit log more than once: {twice[:5]}")
    missing = events - ids.keys()
    if missing:
        problems.append(f"{len(missing)} published events are not in the audit log")
    strange = ids.keys() - events
    if strange:
        problems.append(f"{len(strange)} log entries are of events no service published")
    seen: dict[str, set[str]] = {}
    for e in logged:
        case_id = (e.get("data") or {}).get("case_id")
        if case_id is not None:
            seen.setdefault(str(case_id), set()).add(str(e["type"]))
    for case_id in cases.values():
        lacking = [t for t in CASE_EVENTS if t not in seen.get(case_id, set())]
        if lacking:
            problems.append(f"the log lacks {', '.join(lacking)} of case {case_id}")
