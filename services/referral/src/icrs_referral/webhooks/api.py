"""Routes of webhooks (contract §6): register, list, read, delete, enable, deliveries.

A provider wants its inbox's events and a requester its referrals' events: either
`referrals:respond` or `referrals:read` lets an organization manage its webhooks.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.auth import Caller, organization_of, require_any_scope
from icrs_shared.errors import PROBLEM_JSON, problem_body
from icrs_shared.http import Idempotency
from icrs_shared.pagination import Cursor, Limit, Page
from icrs_shared.runtime import SessionDep

from . import service
from .models import Webhook, idempotency_keys
from .schemas import DeliveryDetail, DeliveryOut, WebhookCreate, WebhookCreated, WebhookOut

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

#: Holding either one lets a client manage its organization's webhooks.
SCOPES = ("referrals:respond", "referrals:read")


Member = Annotated[Caller, Depends(require_any_scope(*SCOPES))]
WebhookId = Annotated[uuid.UUID, Path(description="The webhook's id.")]
DeliveryId = Annotated[uuid.UUID, Path(description="The delivery's id (its `webhook-id`).")]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def _webhook(session: AsyncSession, caller: Caller, webhook_id: uuid.UUID) -> Webhook:
    return await service.get(
        session=session, webhook_id=webhook_id, organization_id=organization_of(caller)
    )


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Register a webhook",
    description=(
        "Deliveries of the organization's referral events (as provider or as requester) "
        "follow the Standard Webhooks specification: `webhook-id`, `webhook-timestamp` and "
        "`webhook-signature` headers, the CloudEvents envelope as the body. The `secret` is "
        "in this answer only. Accepts `Idempotency-Key`, but since the secret is never shown "
        "again, a retry with the same key answers 409 `webhook-already-registered` with the "
        "`webhook_id` that was registered. If that first answer was lost, delete that "
        "webhook and register another."
    ),
    responses={
        201: {"headers": {"Location": {"schema": {"type": "string"}}}},
        409: {"description": "Already registered under this key, or too many webhooks."},
    },
)
async def register_webhook(
    body: WebhookCreate, request: Request, caller: Member, session: SessionDep
) -> Response:
    idem = await Idempotency.begin(session, idempotency_keys, request, caller.client_id)
    if idem.replay is not None:
        return idem.replay
    webhook, secret = await service.register(
        session=session, organization_id=organization_of(caller), data=body
    )
    already = problem_body(
        409,
        code="webhook-already-registered",
        title="Webhook already registered",
        detail="a webhook was registered for this Idempotency-Key; its secret is shown only once",
        extra={"webhook_id": str(webhook.id)},
    )
    await idem.save(session, 409, already, {"Content-Type": PROBLEM_JSON})
    replay = await idem.commit(session, request)
    if replay is not None:
        return replay
    created = WebhookCreated(**WebhookOut.model_validate(webhook).model_dump(), secret=secret)
    headers = {"Location": f"/v1/webhooks/{webhook.id}", **_NO_STORE}
    return JSONResponse(jsonable_encoder(created), status_code=201, headers=headers)


@router.get("", summary="List the organization's webhooks")
async def list_webhooks(
    caller: Member, session: SessionDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[WebhookOut]:
    rows, next_cursor = await service.list_webhooks(
        session=session, organization_id=organization_of(caller), limit=limit, cursor=cursor
    )
    items = [WebhookOut.model_validate(w) for w in rows]
    return Page[WebhookOut](items=items, next_cursor=next_cursor)


@router.get("/{webhook_id}", summary="Read a webhook")
async def read_webhook(webhook_id: WebhookId, caller: Member, session: SessionDep) -> WebhookOut:
    return WebhookOut.model_validate(await _webhook(session, caller, webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Delete a webhook",
    description="Its deliveries go with it: those still pending are not sent.",
)
async def delete_webhook(webhook_id: WebhookId, caller: Member, session: SessionDep) -> Response:
    await service.remove(
        session=session, webhook_id=webhook_id, organization_id=organization_of(caller)
    )
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/enable",
    summary="Enable a webhook again",
    description=(
        "A webhook is disabled after several deliveries in a row were given up on "
        "(`webhook.delivery_failed` says so). Enabling it resets that count; its pending "
        "deliveries go out again. Enabling an enabled webhook changes nothing."
    ),
)
async def enable_webhook(webhook_id: WebhookId, caller: Member, session: SessionDep) -> WebhookOut:
    webhook = await service.enable(
        session=session, webhook_id=webhook_id, organization_id=organization_of(caller)
    )
    await session.commit()
    return WebhookOut.model_validate(webhook)


@router.get(
    "/{webhook_id}/deliveries",
    summary="List a webhook's deliveries",
    description="Newest first. `pending` ones wait for `next_attempt_at`.",
)
async def list_deliveries(
    webhook_id: WebhookId,
    caller: Member,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryOut]:
    webhook = await _webhook(session, caller, webhook_id)
    rows, next_cursor = await service.list_deliveries(
        session=session, webhook=webhook, limit=limit, cursor=cursor
    )
    items = [DeliveryOut.model_validate(d) for d in rows]
    return Page[DeliveryOut](items=items, next_cursor=next_cursor)


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}",
    summary="Read a delivery and its attempts",
    description="Each attempt's status code or error class and duration; never a response body.",
)
async def read_delivery(
    webhook_id: WebhookId, delivery_id: DeliveryId, caller: Member, session: SessionDep
) -> DeliveryDetail:
    webhook = await _webhook(session, caller, webhook_id)
    delivery, attempts = await service.get_delivery(
        session=session, webhook=webhook, delivery_id=delivery_id
    )
    return DeliveryDetail.of(delivery, attempts)
