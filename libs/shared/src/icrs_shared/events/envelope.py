"""The CloudEvents 1.0 envelope every ICRS event travels in (contract §7)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TYPE_PREFIX = "icrs."


class Envelope(BaseModel):
    """CloudEvents structured-mode JSON with the ICRS extensions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str = Field(pattern=r"^/icrs/[a-z]+$")
    type: str = Field(pattern=r"^icrs\.[a-z_]+\.[a-z_]+$")
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
    actor: str | None = None
    actororg: str | None = None
    traceparent: str | None = None

    @field_validator("time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("time must carry a timezone")
        return v.astimezone(UTC)

    @property
    def routing_key(self) -> str:
        return routing_key(self.type)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        return cls.model_validate_json(raw)


def routing_key(event_type: str) -> str:
    """`icrs.case.registered` travels with routing key `case.registered`."""
    return event_type.removeprefix(TYPE_PREFIX)
