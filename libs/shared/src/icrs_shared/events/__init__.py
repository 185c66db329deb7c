from .asyncapi import asyncapi_document
from .catalog import platform_events
from .envelope import Envelope, routing_key
from .registry import EventData, EventRegistry, EventType, UnknownEventType

__all__ = [
    "Envelope",
    "EventData",
    "EventRegistry",
    "EventType",
    "UnknownEventType",
    "asyncapi_document",
    "platform_events",
    "routing_key",
]
