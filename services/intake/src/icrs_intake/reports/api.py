"""Routes of reports (contract §1): aggregate counts of the organization's cases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from icrs_shared.auth import Caller, require_scopes
from icrs_shared.disclosure import THRESHOLD
from icrs_shared.errors import FieldError, Invalid
from icrs_shared.runtime import SessionDep
from icrs_shared.times import Day
from icrs_shared.vocabulary import ProgrammeTrack

from ..state import organization_of
from . import service as reports
from .schemas import CaseReport

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Reporter = Annotated[Caller, Depends(require_scopes("reports:read"))]

_DESCRIPTION = f"""\
Counts of the caller's organization's cases by programme track, beneficiary category, sex,
age band and area. Open and closed cases are counted (a closed case was still registered
and served); erased cases are not. Counts are grouped in the database from the codes kept
in clear; no personal data is read.

Small cells are withheld, so that no one can be singled out:

- **Primary suppression**: a count from 1 to {THRESHOLD - 1} is shown as
  `{{"value": ..., "count": null, "suppressed": true}}`.
- **Complementary suppression**, in each dimension on its own: the total minus the shown
  cells gives the sum of the withheld ones. So while only one cell of a dimension is
  withheld, or its withheld cells could only all be ones (their sum equals their number),
  the smallest shown cell (on a tie, the first by value) is withheld too.
- **Total**: a total from 1 to {THRESHOLD - 1} is withheld (`total: null`,
  `total_suppressed: true`), and then every cell is too. Any other total is exact.

Values without cases are not listed; the cells of a dimension are in the order of their
values, never of their counts. `area` groups cases by the first `area_level` characters of
their P-code; a code shorter than that counts under itself. Registration dates are UTC.

Counts are exact: comparing reports whose filters overlap (for example `until` one day
apart) can narrow down the cases that differ. Give `reports:read` to clients that publish
aggregates, not to the public.
"""


@router.get(
    "/cases",
    summary="Count the organization's cases",
    description=_DESCRIPTION,
)
async def case_report(
    caller: Reporter,
    session: SessionDep,
    area_level: Annotated[
        int,
        Query(
            ge=2,
            le=16,
            description="Characters of the P-code to group areas by: 2 the country, 4 its "
            "first administrative level in most countries, and so on.",
        ),
    ] = 4,
    programme_track: Annotated[
        ProgrammeTrack | None, Query(description="Count only this track's cases.")
    ] = None,
    since: Annotated[
        Day | None, Query(description="Cases registered on this day (UTC) or later.")
    ] = None,
    until: Annotated[
        Day | None, Query(description="Cases registered on this day (UTC) or earlier.")
    ] = None,
) -> CaseReport:
    if since is not None and until is not None and until < since:
        raise Invalid(
            "until is before since",
            errors=[
                FieldError(field="query.until", message="must not be before since", code="range")
            ],
        )
    return await reports.case_report(
        session=session,
        organization_id=organization_of(caller),
        area_level=area_level,
        programme_track=programme_track,
        since=since,
        until=until,
    )
