"""The sender: takes due deliveries, POSTs them signed, and records what came back.

A sender claims a batch in a short transaction (`FOR UPDATE SKIP LOCKED` on
PostgreSQL, so that replicas share the work) by moving each delivery's
`next_attempt_at` a lease ahead, sends with no transaction open, and records each
outcome in a transaction of its own. A sender that dies mid-send leaves its deliveries
to be taken again when the lease ends: delivery is at least once, and receivers drop
repeats by `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import httpx
from sqlalchemy import delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col

from icrs_shared.db import Database
from icrs_shared.events.catalog import WebhookDeliveryFailed
from icrs_shared.outbox import Outbox

from . import signing
from .models import DELIVERED, FAILED, PENDING, Webhook, WebhookAttempt, WebhookDelivery

log = logging.getLogger(__name__)

_Locked = TypeVar("_Locked", Webhook, WebhookDelivery)

#: Seconds to wait before each retry; a delivery is given up after its last one.
RETRY_SCHEDULE: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400)
#: Each wait is stretched or shrunk by up to this share, so retries do not arrive in step.
JITTER = 0.2
#: Deliveries given up in a row after which a webhook is disabled.
DISABLE_AFTER = 5
#: Seconds one request may take, from connecting to the status line.
TIMEOUT = 10.0
#: Seconds a claimed delivery is held before another sender may take it again.
LEASE = 60.0
BATCH_SIZE = 50
#: Seconds between looks for due deliveries when no new delivery wakes the sender.
POLL_INTERVAL = 1.0
#: Finished deliveries (and their attempts) are kept this long.
RETENTION = timedelta(days=30)

#: Set in a session's info by whoever adds deliveries; wakes the sender on commit.
WAKE_KEY = "icrs.webhooks.pending"
USER_AGENT = "ICRS-Webhooks/1"


def max_attempts() -> int:
    return len(RETRY_SCHEDULE) + 1


def retry_delay(failed_attempts: int) -> float:
    """Seconds to wait after the `failed_attempts`-th failed attempt."""
    base = RETRY_SCHEDULE[min(failed_attempts, len(RETRY_SCHEDULE)) - 1]
    return base * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311  (spread, not a secret)


@dataclass(frozen=True)
class Claimed:
    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    url: str = field(repr=False)
    secret: str = field(repr=False)  # out of logs and tracebacks
    payload: str = field(repr=False)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """The background task that sends deliveries; one per service process."""

    def __init__(self, db: Database, outbox: Outbox, client: httpx.AsyncClient) -> None:
        self.db, self.outbox, self.client = db, outbox, client
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup = datetime.min.replace(tzinfo=UTC)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(WAKE_KEY, False):
            self._wake.set()

    async def start(self) -> None:
        event.listen(self.db.session_class, "after_commit", self._after_commit)
        self._task = asyncio.create_task(self._run(), name="webhooks:sender")

    async def stop(self) -> None:
        """Let the requests in flight finish and be recorded (for at most a request's
        timeout), then stop."""
        event.remove(self.db.session_class, "after_commit", self._after_commit)
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            _, running = await asyncio.wait({self._task}, timeout=TIMEOUT + 1.0)
            for task in running:
                task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        backoff = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                sent = await self.send_due()
                await self._maybe_cleanup()
                backoff = 0.0
            except Exception as exc:
                # The database is away, most likely: wait longer each time, up to a minute.
                backoff = min(max(backoff * 2, POLL_INTERVAL), 60.0)
                log.warning(
                    "webhook sender error",
                    exc_info=True,
                    extra={"error_type": type(exc).__name__, "retry_in": backoff},
                )
                sent = 0
            if sent >= BATCH_SIZE and not backoff:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff or POLL_INTERVAL)

    async def send_due(self) -> int:
        """Send one batch of due deliveries; how many were attempted."""
        batch = await self._claim()
        if batch:
            await asyncio.gather(*(self._deliver(c) for c in batch))
        return len(batch)

    async def _claim(self) -> list[Claimed]:
        now = datetime.now(UTC)
        d, w = WebhookDelivery, Webhook
        query = (
            select(col(d.id), col(d.payload), col(w.id), col(w.url), col(w.secret))
            .join(w, col(w.id) == col(d.webhook_id))
            .where(
                col(d.status) == PENDING,
                col(d.next_attempt_at) <= now,
                col(w.enabled).is_(True),
            )
            .order_by(col(d.next_attempt_at))
            .limit(BATCH_SIZE)
            .with_for_update(of=d, skip_locked=True)
        )
        async with self.db.transaction() as session:
            rows = (await session.execute(query)).all()
            if not rows:
                return []
            await session.execute(
                update(d)
                .where(col(d.id).in_([r[0] for r in rows]))
                .values(next_attempt_at=now + timedelta(seconds=LEASE))
            )
        return [Claimed(r[0], r[2], r[3], r[4], r[1]) for r in rows]

    async def _deliver(self, claimed: Claimed) -> None:
        try:
            outcome = await self._send(claimed)
            await self._record(claimed, outcome)
        except Exception as exc:
            # The lease runs out and the delivery is taken again.
            log.warning(
                "webhook delivery not recorded",
                extra={"delivery_id": str(claimed.delivery_id), "error_type": type(exc).__name__},
            )

    async def _send(self, claimed: Claimed) -> Outcome:
        body = claimed.payload.encode()
        headers = signing.headers(
            secret=claimed.secret,
            msg_id=str(claimed.delivery_id),
            timestamp=int(time.time()),
            body=body,
        )
        headers.update({"content-type": "application/json", "user-agent": USER_AGENT})
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            async with (
                asyncio.timeout(TIMEOUT),
                self.client.stream("POST", claimed.url, content=body, headers=headers) as reply,
            ):
                # Only the status counts: the body is neither read nor kept.
                status = reply.status_code
        except TimeoutError:
            error = "Timeout"
        except Exception as exc:
            error = type(exc).__name__[:64]
        duration_ms = round((time.perf_counter() - started) * 1000)
        return Outcome(status, error, duration_ms)

    async def _record(self, claimed: Claimed, outcome: Outcome) -> None:
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            # The webhook first, then the delivery: the order a deletion locks them in.
            webhook = await _locked(session, Webhook, claimed.webhook_id)
            delivery = await _locked(session, WebhookDelivery, claimed.delivery_id)
            if webhook is None or delivery is None or delivery.status != PENDING:
                return  # deleted, or finished by another sender after a lease ran out
            delivery.attempts += 1
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    number=delivery.attempts,
                    attempted_at=now,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            )
            if outcome.delivered:
                delivery.status, delivery.delivered_at = DELIVERED, now
                delivery.next_attempt_at = None
                webhook.consecutive_failures = 0
            elif delivery.attempts >= max_attempts():
                delivery.status, delivery.next_attempt_at = FAILED, None
                await self._gave_up(session, webhook, delivery, now)
            else:
                delay = timedelta(seconds=retry_delay(delivery.attempts))
                delivery.next_attempt_at = now + delay
            session.add_all([webhook, delivery])

    async def _gave_up(
        self, session: AsyncSession, webhook: Webhook, delivery: WebhookDelivery, now: datetime
    ) -> None:
        webhook.consecutive_failures += 1
        disable = webhook.enabled and webhook.consecutive_failures >= DISABLE_AFTER
        if disable:
            webhook.enabled, webhook.disabled_at, webhook.updated_at = False, now, now
        log.info(
            "webhook delivery failed",
            extra={"webhook_id": str(webhook.id), "delivery_id": str(delivery.id)},
        )
        await self.outbox.emit(
            session,
            "icrs.webhook.delivery_failed",
            WebhookDeliveryFailed(
                webhook_id=webhook.id,
                organization_id=webhook.organization_id,
                delivery_id=delivery.id,
                event_id=delivery.event_id,
                attempts=delivery.attempts,
                disabled=disable,
            ),
            subject=webhook.id,
        )

    async def _maybe_cleanup(self) -> None:
        now = datetime.now(UTC)
        if now - self._last_cleanup < timedelta(minutes=10):
            return
        self._last_cleanup = now
        d = WebhookDelivery
        async with self.db.transaction() as session:
            await session.execute(
                delete(d).where(
                    col(d.status) != PENDING,
                    col(d.created_at) < now - RETENTION,
                )
            )


async def _locked(session: AsyncSession, model: type[_Locked], key: uuid.UUID) -> _Locked | None:
    """The row, locked against other writers but not against new deliveries' foreign keys."""
    query = select(model).where(col(model.id) == key).with_for_update(key_share=True)
    return (await session.execute(query)).scalar_one_or_none()
