"""The body of the case report: counts by dimension, small cells suppressed."""

from __future__ import annotations

from pydantic import BaseModel, Field

from icrs_shared.disclosure import Cell


class Breakdown(BaseModel):
    """Each dimension's values that have cases, in the order of their values."""

    programme_track: list[Cell]
    beneficiary_category: list[Cell]
    sex: list[Cell]
    age_band: list[Cell]
    area: list[Cell] = Field(description="By the first `area_level` characters of the P-code.")


class CaseReport(BaseModel):
    total: int | None = Field(description="Cases counted; null when suppressed.")
    total_suppressed: bool = Field(default=False, description="The total is withheld.")
    by: Breakdown
    suppressed_below: int = Field(description="Counts from 1 to this minus one are withheld.")
    area_level: int = Field(description="Characters of the P-code that areas are grouped by.")
