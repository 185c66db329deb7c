"""Counts of an organization's cases, grouped in SQL, with small cells suppressed.

Nothing here reads a case's personal data: only the codes kept in clear for reporting
(programme track, beneficiary category, sex, age band, area) are grouped and counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped
from sqlmodel import col

from icrs_shared.disclosure import THRESHOLD, protect

from ..models import Case
from .schemas import Breakdown, CaseReport

DIMENSIONS = ("programme_track", "beneficiary_category", "sex", "age_band", "area")


def _columns(area_level: int) -> dict[str, Mapped[str] | ColumnElement[Any]]:
    return {
        "programme_track": col(Case.programme_track),
        "beneficiary_category": col(Case.beneficiary_category),
        "sex": col(Case.sex),
        "age_band": col(Case.age_band),
        "area": func.substr(col(Case.area), 1, area_level),
    }


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


async def case_counts(
    *,
    session: AsyncSession,
    organization_id: uuid.UUID,
    area_level: int,
    programme_track: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> dict[str, dict[str, int]]:
    """Cases per value of each dimension: erased cases left out, closed ones counted.

    One statement, so that every dimension counts the same cases (one snapshot).
    """
    where: list[ColumnElement[bool]] = [
        col(Case.organization_id) == organization_id,
        col(Case.status) != "erased",
    ]
    if programme_track is not None:
        where.append(col(Case.programme_track) == programme_track)
    if since is not None:
        where.append(col(Case.created_at) >= _day_start(since))
    if until is not None and until < date.max:
        where.append(col(Case.created_at) < _day_start(until + timedelta(days=1)))
    parts = []
    for name, column in _columns(area_level).items():
        values = select(column.label("value")).where(*where).subquery()
        parts.append(
            select(
                cast(literal(name), String).label("dimension"),
                values.c.value,
                func.count().label("n"),
            ).group_by(values.c.value)
        )
    counts: dict[str, dict[str, int]] = {name: {} for name in DIMENSIONS}
    for dimension, value, n in await session.execute(union_all(*parts)):
        counts[dimension][value] = n
    return counts


def report(counts: Mapping[str, Mapping[str, int]], *, area_level: int) -> CaseReport:
    """The published report: a total of 1 to THRESHOLD - 1 is withheld too (its cells
    then all are); any other total is exact, since the cells are protected in each
    dimension on their own."""
    total = sum(counts["programme_track"].values())
    small = 0 < total < THRESHOLD
    return CaseReport(
        total=None if small else total,
        total_suppressed=small,
        by=Breakdown(**{name: protect(counts[name]) for name in DIMENSIONS}),
        suppressed_below=THRESHOLD,
        area_level=area_level,
    )


async def case_report(
    *,
    session: AsyncSession,
    organization_id: uuid.UUID,
    area_level: int,
    programme_track: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> CaseReport:
    counts = await case_counts(
        session=session,
        organization_id=organization_id,
        area_level=area_level,
        programme_track=programme_track,
        since=since,
        until=until,
    )
    return report(counts, area_level=area_level)
