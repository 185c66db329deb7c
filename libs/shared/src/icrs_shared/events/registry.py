"""Event types and their data schemas; the AsyncAPI document is generated from them."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from .envelope import TYPE_PREFIX, Envelope


class EventData(BaseModel):
    """Base for event payloads: pseudonymous ids and codes only, never direct identifiers.

    Consumers ignore fields they do not know, so producers may add fields.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


D = TypeVar("D", bound=EventData)


@dataclass(frozen=True)
class EventType:
    type: str
    data: builtins.type[EventData]
    producer: str
    summary: str

    @property
    def routing_key(self) -> str:
        return self.type.removeprefix(TYPE_PREFIX)


class UnknownEventType(KeyError):
    pass


class EventRegistry:
    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}

    def register(
        self, event_type: str, data: type[EventData], *, producer: str, summary: str = ""
    ) -> EventType:
        if not event_type.startswith(TYPE_PREFIX):
            raise ValueError(f"event types start with {TYPE_PREFIX!r}: {event_type}")
        known = self._types.get(event_type)
        if known is not None and known.data is not data:
            raise ValueError(f"{event_type} is already registered with another schema")
        entry = EventType(event_type, data, producer, summary or (data.__doc__ or "").strip())
        self._types[event_type] = entry
        return entry

    def __getitem__(self, event_type: str) -> EventType:
        try:
            return self._types[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._types.values(), key=lambda t: t.type))

    def __len__(self) -> int:
        return len(self._types)

    def parse(self, envelope: Envelope, data: type[D]) -> D:
        """The envelope's data as `data`, checking it is the schema registered for its type."""
        if self[envelope.type].data is not data:
            raise TypeError(f"{envelope.type} does not carry {data.__name__}")
        return data.model_validate(envelope.data)

    def validate(self, envelope: Envelope) -> EventData:
        return self[envelope.type].data.model_validate(envelope.data)

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        return {t.type: t.data.model_json_schema() for t in self}
