"""Publishing counts of people without singling anyone out: small-cell suppression with
complementary suppression, for every report of the platform."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

#: Counts from 1 to THRESHOLD - 1 are never shown.
THRESHOLD = 5


class Cell(BaseModel):
    """The people that share one value of a dimension."""

    value: str = Field(description="The code, band or area code prefix counted.")
    count: int | None = Field(description="How many; null when suppressed.")
    suppressed: bool = Field(default=False, description="The count is withheld.")


def protect(counts: Mapping[str, int], threshold: int = THRESHOLD) -> list[Cell]:
    """A dimension's cells, in the order of their values, with small counts withheld.

    Every count from 1 to `threshold - 1` is withheld (primary suppression). Then, since
    the total minus the shown cells gives the sum of the withheld ones, the smallest
    shown cells (ties: the first value) are withheld too until that sum cannot single one
    out: at least two cells are withheld and they are not all ones (complementary
    suppression). Values without cases are not listed.
    """
    present = {value: n for value, n in counts.items() if n > 0}
    hidden = {value for value, n in present.items() if n < threshold}
    shown = sorted((n, value) for value, n in present.items() if value not in hidden)
    for _, value in shown:
        if not _exposed([present[v] for v in hidden]):
            break
        hidden.add(value)
    return [
        Cell(value=value, count=None, suppressed=True)
        if value in hidden
        else Cell(value=value, count=n)
        for value, n in sorted(present.items())
    ]


def _exposed(withheld: list[int]) -> bool:
    """Whether the sum of the withheld counts (the total minus the shown ones) gives
    one of them away: it is a single count, or they can only all be ones."""
    if not withheld:
        return False
    return len(withheld) == 1 or sum(withheld) == len(withheld)
