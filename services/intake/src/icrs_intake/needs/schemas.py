"""Request and response bodies of needs assessments (contract §5 and §10)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from icrs_shared.text import plain_text
from icrs_shared.vocabulary import Category

Priority = Literal["urgent", "high", "normal"]
Note = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(plain_text),
]


class NeedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: Category
    priority: Priority = "normal"
    note: Note | None = Field(default=None, description="Personal data: stored encrypted.")
    share_note: StrictBool = Field(
        default=False, description="The provider may read the note in the referral view."
    )


class AssessmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    needs: list[NeedIn] = Field(min_length=1, max_length=20)


class NeedOut(BaseModel):
    id: uuid.UUID
    category: str
    priority: str
    note: str | None = Field(description="Absent once the case is erased.")
    share_note: bool
    status: str = Field(
        description="`open`, `unmatched`, or the status of the need's latest referral."
    )


class AssessmentOut(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    needs: list[NeedOut]
    recorded_by: str
    created_at: datetime
