"""Response bodies of the import routes (contract §5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Format = Literal["csv", "ndjson"]
ImportStatus = Literal["running", "completed", "failed", "interrupted"]


class RejectionOut(BaseModel):
    row: int = Field(
        description=(
            "NDJSON: the line number. CSV: the record's place after the header. "
            "0: the file as a whole (an unknown or repeated column, which is ignored)."
        )
    )
    field: str = Field(description="CSV: the column. NDJSON: the dotted path in the object.")
    reason: str = Field(description="What is wrong; never the value.")


class ImportSummary(BaseModel):
    """An import and its counts: `rows` = `created` + `updated` + `unchanged` + `rejected`."""

    id: uuid.UUID
    status: ImportStatus
    format: Format
    rows: int = Field(description="Data rows read so far (blank lines are not rows).")
    created: int
    updated: int
    unchanged: int
    rejected: int
    started_at: datetime
    finished_at: datetime | None


class ImportOut(ImportSummary):
    rejections: list[RejectionOut] = Field(
        description="A page of the rejections, by row then field; a row may have several."
    )
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page of rejections."
    )
