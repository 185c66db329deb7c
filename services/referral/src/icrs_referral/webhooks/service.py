"""Webhook registrations, their deliveries as their owners read them, and the fan-out of
referral events into deliveries. Raises domain errors; the caller commits."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.errors import Conflict, NotFound, ServiceUnavailable
from icrs_shared.events import Envelope
from icrs_shared.pagination import decode_keyset, encode_keyset

from . import signing
from .delivery import WAKE_KEY
from .models import Webhook, WebhookAttempt, WebhookDelivery
from .schemas import ALL_REFERRAL_EVENTS, WebhookCreate

#: Endpoints one organization may register.
MAX_WEBHOOKS_PER_ORGANIZATION = 20
#: The fields of a referral event naming the organizations it concerns.
_ORGANIZATION_FIELDS = ("organization_id", "requester_organization_id")

_Position = tuple[datetime, uuid.UUID]
_Row = TypeVar("_Row", Webhook, WebhookDelivery)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# Registrations -------------------------------------------------------------------


async def register(
    *, session: AsyncSession, organization_id: uuid.UUID, data: WebhookCreate
) -> tuple[Webhook, str]:
    """A new, enabled webhook and its signing secret (to show once)."""
    count = await session.scalar(
        select(func.count())
        .select_from(Webhook)
        .where(col(Webhook.organization_id) == organization_id)
    )
    if (count or 0) >= MAX_WEBHOOKS_PER_ORGANIZATION:
        raise Conflict(
            f"an organization may register at most {MAX_WEBHOOKS_PER_ORGANIZATION} webhooks",
            code="too-many-webhooks",
            title="Too many webhooks",
        )
    secret = signing.new_secret()
    webhook = Webhook.model_validate(
        {
            "organization_id": organization_id,
            "url": str(data.url),
            "event_types": data.event_types,
            "description": data.description,
            "secret": secret,
        }
    )
    session.add(webhook)
    try:
        await session.flush()
    except DBAPIError:
        # The failed statement's parameters hold the secret: keep them out of every log.
        raise ServiceUnavailable("the webhook could not be stored; try again") from None
    return webhook, secret


async def get(
    *, session: AsyncSession, webhook_id: uuid.UUID, organization_id: uuid.UUID
) -> Webhook:
    """The organization's webhook; 404 for another organization's, without saying so."""
    webhook = await session.get(Webhook, webhook_id)
    if webhook is None or webhook.organization_id != organization_id:
        raise NotFound("no such webhook")
    return webhook


async def list_webhooks(
    *, session: AsyncSession, organization_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[Sequence[Webhook], str | None]:
    """The organization's webhooks, oldest first."""
    query = select(Webhook).where(col(Webhook.organization_id) == organization_id)
    after = _position(cursor)
    if after is not None:
        query = query.where(
            or_(
                col(Webhook.created_at) > after[0],
                and_(col(Webhook.created_at) == after[0], col(Webhook.id) > after[1]),
            )
        )
    query = query.order_by(col(Webhook.created_at), col(Webhook.id)).limit(limit + 1)
    rows = (await session.execute(query)).scalars().all()
    return _page(rows, limit, lambda w: (w.created_at, w.id))


async def remove(
    *, session: AsyncSession, webhook_id: uuid.UUID, organization_id: uuid.UUID
) -> None:
    """Delete the webhook; its deliveries and their attempts go with it."""
    webhook = await get(session=session, webhook_id=webhook_id, organization_id=organization_id)
    await session.execute(delete(Webhook).where(col(Webhook.id) == webhook.id))


async def enable(
    *, session: AsyncSession, webhook_id: uuid.UUID, organization_id: uuid.UUID
) -> Webhook:
    """Switch a disabled webhook back on: its pending deliveries go out again."""
    webhook = await get(session=session, webhook_id=webhook_id, organization_id=organization_id)
    if not webhook.enabled:
        webhook.enabled = True
        webhook.consecutive_failures = 0
        webhook.disabled_at = None
        webhook.updated_at = _now()
        session.add(webhook)
        await session.flush()
    return webhook


# Deliveries -----------------------------------------------------------------------


async def list_deliveries(
    *, session: AsyncSession, webhook: Webhook, limit: int, cursor: str | None
) -> tuple[Sequence[WebhookDelivery], str | None]:
    """The webhook's deliveries, newest first."""
    created, key = col(WebhookDelivery.created_at), col(WebhookDelivery.id)
    query = select(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == webhook.id)
    before = _position(cursor)
    if before is not None:
        query = query.where(or_(created < before[0], and_(created == before[0], key < before[1])))
    query = query.order_by(created.desc(), key.desc()).limit(limit + 1)
    rows = (await session.execute(query)).scalars().all()
    return _page(rows, limit, lambda r: (r.created_at, r.id))


async def get_delivery(
    *, session: AsyncSession, webhook: Webhook, delivery_id: uuid.UUID
) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    """One of the webhook's deliveries and its attempts, first to last."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.webhook_id != webhook.id:
        raise NotFound("no such delivery")
    query = (
        select(WebhookAttempt)
        .where(col(WebhookAttempt.delivery_id) == delivery.id)
        .order_by(col(WebhookAttempt.number))
    )
    return delivery, list((await session.execute(query)).scalars().all())


async def wanted(session: AsyncSession, envelope: Envelope) -> bool:
    """Whether an enabled webhook wants `envelope` (most events have none)."""
    return bool(await _subscribed(session, envelope))


async def enqueue(*, session: AsyncSession, envelope: Envelope) -> int:
    """One pending delivery of `envelope` per enabled webhook that wants it, of the
    provider's organization and of the requester's; how many."""
    webhooks = await _subscribed(session, envelope)
    event_type, payload, now = envelope.routing_key, envelope.to_json().decode(), _now()
    for webhook in webhooks:
        session.add(
            WebhookDelivery(
                webhook_id=webhook.id,
                event_id=envelope.id,
                event_type=event_type,
                payload=payload,
                next_attempt_at=now,
                created_at=now,
            )
        )
    if webhooks:
        session.sync_session.info[WAKE_KEY] = True
    return len(webhooks)


async def _subscribed(session: AsyncSession, envelope: Envelope) -> list[Webhook]:
    """The enabled webhooks of the event's organizations that take its type."""
    organizations = _organizations(envelope)
    if not organizations:
        return []
    webhooks = (
        await session.execute(
            select(Webhook).where(
                col(Webhook.organization_id).in_(organizations),
                col(Webhook.enabled).is_(True),
            )
        )
    ).scalars()
    event_type = envelope.routing_key
    return [
        w for w in webhooks if ALL_REFERRAL_EVENTS in w.event_types or event_type in w.event_types
    ]


def _organizations(envelope: Envelope) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for field in _ORGANIZATION_FIELDS:
        value = envelope.data.get(field)
        try:
            found.add(uuid.UUID(str(value)))
        except ValueError:
            continue
    return found


# Pages ------------------------------------------------------------------------------


def _position(cursor: str | None) -> _Position | None:
    return decode_keyset(cursor, uuid.UUID)


def _page(
    rows: Sequence[_Row], limit: int, key: Callable[[_Row], _Position]
) -> tuple[Sequence[_Row], str | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    created, last = key(rows[-1])
    return rows, encode_keyset(_utc(created), last)
