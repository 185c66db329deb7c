"""The platform as separate processes, as `icrs serve` runs them in production: each
service in processes of its own with a database of its own, all on one RabbitMQ. The
fault tests kill, stop and restart these processes; the benchmarks load them.

    async with ProcessPlatform(server_url, amqp_url, data_dir, replicas={"audit": 2}) as p:
        client = await p.client()
        ...
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from icrs_shared.testing.broker import delete_queues
from icrs_shared.testing.databases import create_database, drop_database

#: Started in this order: partners issues the tokens and keys the others check.
ORDER = ("partners", "intake", "referral", "audit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: Consonants that Metaphone keeps apart, so that every generated name sounds different.
_CONSONANTS = "bfjklmnprst"


def family_name(number: int) -> str:
    """A family name of its own for each number: no two are probable duplicates."""
    syllables = []
    for _ in range(6):
        number, digit = divmod(number, len(_CONSONANTS))
        syllables.append(_CONSONANTS[digit] + "a")
    return "".join(syllables).capitalize()


def case_body(number: int, *, external_id: bool = True) -> dict[str, Any]:
    """The `POST /v1/cases` body of person `number`: a family name and a document of their
    own, so that no two are probable duplicates. Without `external_id` the case has none
    (a case that has one costs intake a look-up)."""
    body: dict[str, Any] = {
        "person": {
            "given_name": "Amina" if number % 2 else "Yusuf",
            "family_name": family_name(number),
            "sex": "female" if number % 2 else "male",
            "date_of_birth": f"{1970 + number % 30}-0{1 + number % 9}-1{number % 9}",
            "languages": ["so"],
            "documents": [{"type": "ddr_id", "number": f"DDR-{number:08d}"}],
        },
        "beneficiary_category": "ex_combatant",
        "programme_track": "DDR",
        "area": "SO1101",
    }
    if external_id:
        body["external_id"] = f"load-{number}"
    return body


def consent_body(category: str) -> dict[str, Any]:
    """The person's own consent to being referred for `category`, without an end."""
    return {
        "purposes": ["referral"],
        "recipients": {"categories": [category], "organizations": []},
        "given_by": "self",
        "expires_at": None,
    }


def assessment_body(category: str) -> dict[str, Any]:
    """A needs assessment of one high-priority need of `category`."""
    return {"needs": [{"category": category, "priority": "high"}]}


@dataclass(frozen=True)
class Backlog:
    """What the services' databases say of the platform's events at one moment."""

    #: Events written to the services' outboxes, by type.
    written: dict[str, int]
    #: Of them, not yet published.
    unsent: int
    #: Of them, published before the platform was up: perhaps not in the audit log (its
    #: queue may not have been bound yet).
    before_audit: int
    #: The audit log's size.
    logged: int
    #: Events each consumer (`service/consumer`) has processed, from its inbox.
    consumed: dict[str, int]

    @property
    def events(self) -> int:
        return sum(self.written.values())

    @property
    def drained(self) -> bool:
        """Every event published, and every one of them in the audit log."""
        return self.unsent == 0 and self.logged >= self.events - self.before_audit


class ServiceDied(RuntimeError):
    """A service process exited when it should be serving."""


@dataclass
class ServiceProcess:
    """One `icrs serve <name>` process; it keeps its port across restarts."""

    name: str
    replica: int
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as log:
            command = [sys.executable, "-m", "icrs.cli", "serve", self.name]
            command += ["--host", "127.0.0.1", "--port", str(self.port)]
            self.process = subprocess.Popen(  # noqa: S603 - our own command, no shell
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no shutdown, no chance to finish or to ack anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, as an orchestrator stops a service; SIGKILL if it does not go in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def ready(self, within: float = 90.0) -> None:
        """Wait until /readyz answers 200 (migrated, connected, consuming)."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as http:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise ServiceDied(f"{self.name} exited:\n{self.log_tail()}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready in {within}s:\n{self.log_tail()}")
                await asyncio.sleep(0.2)

    async def restart(self, *, hard: bool = True) -> None:
        self.kill() if hard else self.stop()
        self.start()
        await self.ready()


async def delete_namespace(amqp_url: str, namespace: str, services: Sequence[str] = ORDER) -> None:
    """Remove what `services` declare in `namespace` on the broker: their consumers'
    queues, their parking queues and dead-letter exchanges, and the events exchange."""
    from .services import platform_consumers

    queues = [f"{namespace}icrs.{s}.{c}" for s, c in platform_consumers() if s in services]
    queues += [f"{namespace}icrs.{name}.parking" for name in services]
    exchanges = [f"{namespace}icrs.events", *(f"{namespace}icrs.{n}.dlx" for n in services)]
    await delete_queues(amqp_url, queues, exchanges)


class ProcessPlatform:
    """The four services as processes on PostgreSQL (a new database each) and RabbitMQ
    (a namespace of their own). `replicas` runs more than one process of a service."""

    def __init__(
        self,
        server_url: str,
        amqp_url: str,
        data_dir: Path,
        *,
        replicas: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        namespace: str | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        database_via: Mapping[str, str] | None = None,
        start_together: bool = False,
    ) -> None:
        """`service_env` adds variables to one service's processes only; `database_via`
        has a service reach its database through another `host:port` (a TCP proxy);
        `start_together` starts the services at once rather than one after another."""
        self.server_url = server_url
        self.amqp_url = amqp_url
        self.data_dir = data_dir
        self.replicas = {name: 1 for name in ORDER} | dict(replicas or {})
        self.extra_env = dict(env or {})
        self.service_env = {name: dict(v) for name, v in (service_env or {}).items()}
        self.database_via = dict(database_via or {})
        self.start_together = start_together
        self.namespace = namespace or f"icrs-{uuid.uuid4().hex[:8]}."
        self.databases: dict[str, str] = {}
        self.services: dict[str, list[ServiceProcess]] = {}
        self._stack = AsyncExitStack()
        self._audit_since = datetime.max.replace(tzinfo=UTC)

    async def __aenter__(self) -> ProcessPlatform:
        try:
            await self.start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for name in ORDER:
            self.databases[name] = await create_database(self.server_url, prefix=f"icrs_{name}")
            self._stack.push_async_callback(drop_database, self.databases[name])
        # Once the processes have stopped: a broker others use keeps no queue of ours.
        self._stack.push_async_callback(self.delete_topology)
        self._stack.callback(self.stop_all)
        partners_port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("ICRS_")}
        base |= {
            "ICRS_AMQP_URL": self.amqp_url,
            "ICRS_AMQP_NAMESPACE": self.namespace,
            "ICRS_DATA_DIR": str(self.data_dir),
            # The issuer is the partners service itself; the others fetch its keys there.
            "ICRS_PUBLIC_URL": f"http://127.0.0.1:{partners_port}",
            "ICRS_LOG_LEVEL": "WARNING",
        }
        for name in ORDER:
            env = base | {f"ICRS_{name.upper()}_DATABASE_URL": self._database_url(name)}
            env |= self.extra_env | self.service_env.get(name, {})
            self.services[name] = [
                ServiceProcess(name, i, dict(env), self.data_dir / f"{name}-{i}.log")
                for i in range(self.replicas[name])
            ]
        self.services["partners"][0].port = partners_port
        if self.start_together:
            # Each has a database of its own, and fetches partners' keys when it needs them.
            await asyncio.gather(*(self._start_service(name) for name in ORDER))
        else:
            for name in ORDER:
                await self._start_service(name)
        # Events published before the audit log's queue was bound are not in the log.
        self._audit_since = datetime.now(UTC)

    async def _start_service(self, name: str) -> None:
        # One process first (it migrates), then its replicas.
        first, *others = self.services[name]
        first.start()
        await first.ready()
        for process in others:
            process.start()
        for process in others:
            await process.ready()

    def _database_url(self, name: str) -> str:
        url = self.databases[name]
        via = self.database_via.get(name)
        if via is None:
            return url
        host, _, port = via.rpartition(":")
        return make_url(url).set(host=host, port=int(port)).render_as_string(hide_password=False)

    async def stop_together(self) -> None:
        """SIGTERM every process at once and wait for them all, without blocking the loop
        (a TCP proxy on it may carry what they say to the broker and database on the way
        out)."""
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.all_processes()))

    async def delete_topology(self, within: float = 30.0) -> None:
        """Remove the queues and exchanges of the platform's namespace from the broker
        (its parked messages with them). A broker that does not answer is left as it is."""
        try:
            await asyncio.wait_for(delete_namespace(self.amqp_url, self.namespace), within)
        except Exception as exc:
            print(
                f"the queues of namespace {self.namespace!r} were left on the broker: "
                f"{type(exc).__name__}",
                file=sys.stderr,
            )

    def stop_all(self) -> None:
        for name in reversed(ORDER):
            for process in self.services.get(name, []):
                process.stop()

    def url(self, name: str, replica: int = 0) -> str:
        return self.services[name][replica].url

    def processes(self, name: str) -> list[ServiceProcess]:
        return self.services[name]

    def all_processes(self) -> list[ServiceProcess]:
        return [p for name in ORDER for p in self.services[name]]

    @property
    def admin(self) -> dict[str, str]:
        creds: dict[str, str] = json.loads((self.data_dir / "admin-client.json").read_text())
        return creds

    def client(self, **http: Any) -> PlatformClient:
        return PlatformClient(self, **http)

    async def backlog(self) -> Backlog:
        """Read from the services' databases: events written, unsent, logged, consumed."""
        written: dict[str, int] = {}
        consumed: dict[str, int] = {}
        unsent, before_audit, logged = 0, 0, 0
        for name in ORDER:
            dsn = make_url(self.databases[name]).set(drivername="postgresql")
            conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
            try:
                rows = await conn.fetch(
                    "SELECT event_type, count(*) AS n,"
                    " count(*) FILTER (WHERE sent_at IS NULL) AS unsent,"
                    " count(*) FILTER (WHERE sent_at < $1) AS early"
                    " FROM outbox GROUP BY event_type",
                    self._audit_since,
                )
                for row in rows:
                    written[row["event_type"]] = written.get(row["event_type"], 0) + row["n"]
                    unsent += row["unsent"]
                    before_audit += row["early"]
                for row in await conn.fetch("SELECT consumer, count(*) AS n FROM inbox GROUP BY 1"):
                    consumed[f"{name}/{row['consumer']}"] = row["n"]
                if name == "audit":
                    logged = await conn.fetchval("SELECT size FROM log_head WHERE id = 1") or 0
            finally:
                await conn.close()
        return Backlog(written, unsent, before_audit, logged, consumed)

    async def settled(self, *, within: float = 600.0, quiet: float = 2.0) -> Backlog:
        """Wait until every event is published and logged, and no consumer has moved for
        `quiet` seconds (the audit log has all; the others have done what they will)."""
        deadline = time.monotonic() + within
        last: Backlog | None = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(min(quiet / 2, 1.0))
            try:
                now = await self.backlog()
            except (OSError, asyncpg.TooManyConnectionsError):
                continue  # a server shared with other work may be full for a moment
            if now != last or not now.drained:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
        raise TimeoutError(f"the platform did not settle in {within}s: {last}")


class PlatformClient:
    """What an organization's system does over HTTP: get tokens, register organizations
    and services, register people and their needs, answer referrals."""

    def __init__(self, platform: ProcessPlatform, **http: Any) -> None:
        self.platform = platform
        options: dict[str, Any] = {"timeout": 30.0} | http
        self.http = {
            name: [httpx.AsyncClient(base_url=p.url, **options) for p in processes]
            for name, processes in platform.services.items()
        }
        self._turn = 0

    async def aclose(self) -> None:
        for clients in self.http.values():
            for client in clients:
                await client.aclose()

    async def __aenter__(self) -> PlatformClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def to(self, name: str) -> httpx.AsyncClient:
        """A client of the service, taking its replicas in turn."""
        clients = self.http[name]
        self._turn += 1
        return clients[self._turn % len(clients)]

    async def token(self, client_id: str, secret: str) -> dict[str, str]:
        r = await self.to("partners").post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=httpx.BasicAuth(client_id, secret),
        )
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def admin(self) -> dict[str, str]:
        creds = self.platform.admin
        return await self.token(creds["client_id"], creds["client_secret"])

    async def organization(
        self, name: str, kind: str, scopes: list[str], **verify: Any
    ) -> tuple[str, dict[str, str]]:
        """A verified organization and a token of a client of its own."""
        org, client_id, secret = await self.organization_client(name, kind, scopes, **verify)
        return org, await self.token(client_id, secret)

    async def organization_client(
        self, name: str, kind: str, scopes: list[str], **verify: Any
    ) -> tuple[str, str, str]:
        """A verified organization and its client's id and secret (for runs that outlive
        a token: take a new one with `token`)."""
        admin = await self.admin()
        partners = self.to("partners")
        r = await partners.post(
            "/v1/organizations", json={"name": name, "kind": kind, "country": "SO"}, headers=admin
        )
        r.raise_for_status()
        org = str(r.json()["id"])
        r = await partners.post(f"/v1/organizations/{org}/verify", json=verify, headers=admin)
        r.raise_for_status()
        r = await partners.post(
            f"/v1/organizations/{org}/clients",
            json={"name": f"{name} system", "scopes": scopes},
            headers=admin,
        )
        r.raise_for_status()
        return org, r.json()["client_id"], r.json()["client_secret"]

    async def publish_service(
        self,
        org: str,
        headers: dict[str, str],
        *,
        category: str = "health",
        areas: tuple[str, ...] = ("SO11",),
        capacity: int | None = None,
    ) -> str:
        r = await self.to("partners").post(
            f"/v1/organizations/{org}/services",
            json={
                "name": f"{category} service",
                "category": category,
                "languages": ["so"],
                "service_areas": list(areas),
                "eligibility": {"accepts_minors": True},
                "capacity": {"maximum": capacity, "accepting": True},
                "accept_within": "PT72H",
            },
            headers=headers,
        )
        r.raise_for_status()
        return str(r.json()["id"])

    async def refer(
        self,
        headers: dict[str, str],
        number: int,
        *,
        category: str = "health",
        idempotency_key: str | None = None,
    ) -> str:
        """Register person `number` with consent to referral and one need; the case id.

        With `idempotency_key`, each of the three requests carries a key derived from it,
        so that calling again after a failure registers nothing twice."""
        intake = self.to("intake")

        def keyed(step: str) -> dict[str, str]:
            if idempotency_key is None:
                return headers
            return headers | {"Idempotency-Key": f"{idempotency_key}/{step}"}

        r = await intake.post("/v1/cases", json=case_body(number), headers=keyed("case"))
        r.raise_for_status()
        case_id = str(r.json()["id"])
        r = await intake.post(
            f"/v1/cases/{case_id}/consents",
            json=consent_body(category),
            headers=keyed("consent"),
        )
        r.raise_for_status()
        r = await intake.post(
            f"/v1/cases/{case_id}/assessments",
            json=assessment_body(category),
            headers=keyed("assessment"),
        )
        r.raise_for_status()
        return case_id
