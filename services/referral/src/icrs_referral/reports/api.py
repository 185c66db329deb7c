"""`GET /v1/reports/referrals`: referral statistics, small cells suppressed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from icrs_shared.auth import Caller, organization_of, require_scopes
from icrs_shared.disclosure import THRESHOLD
from icrs_shared.runtime import SessionDep
from icrs_shared.times import Day

from .service import ReferralReport, Side, referral_report

router = APIRouter(tags=["reports"])


@router.get(
    "/v1/reports/referrals",
    summary="Referral statistics",
    description=(
        "The referrals the caller's organization made (`side=requester`, the default) or "
        "received (`side=provider`): counts by need category, area and status, acceptance "
        "rate, median hours to accept and to complete, and the requester's unmatched needs "
        f"by reason. Counts from 1 to {THRESHOLD - 1} are withheld, with complementary "
        "suppression in each dimension; a rate or a median is null when it rests on fewer "
        f"than {THRESHOLD} referrals."
    ),
)
async def report(
    caller: Annotated[Caller, Depends(require_scopes("reports:read"))],
    session: SessionDep,
    side: Side = "requester",
    area_level: Annotated[int, Query(ge=2, le=16)] = 4,
    since: Annotated[Day | None, Query()] = None,
    until: Annotated[Day | None, Query()] = None,
) -> ReferralReport:
    return await referral_report(
        session=session,
        organization_id=organization_of(caller),
        side=side,
        area_level=area_level,
        since=since,
        until=until,
    )
