"""An AsyncAPI 3.0 document of the event registry."""

from __future__ import annotations

from typing import Any

from .envelope import Envelope
from .registry import EventRegistry


def asyncapi_document(
    registry: EventRegistry, *, title: str = "ICRS events", version: str = "1.0.0"
) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Envelope": _envelope_schema()}
    for et in registry:
        name = et.routing_key.replace(".", "_")
        data_schema = et.data.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in data_schema.pop("$defs", {}).items():
            schemas.setdefault(def_name, definition)
        schemas.setdefault(et.data.__name__, data_schema)
        messages[name] = {
            "name": et.type,
            "title": et.type,
            "summary": et.summary,
            "contentType": "application/cloudevents+json",
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": et.type},
                            "data": {"$ref": f"#/components/schemas/{et.data.__name__}"},
                        },
                    },
                ]
            },
        }
        channels[name] = {
            "address": et.routing_key,
            "description": f"Routing key `{et.routing_key}` on the `icrs.events` exchange.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": "icrs.events", "type": "topic", "durable": True},
                    "bindingVersion": "0.3.0",
                }
            },
        }
        operations[f"publish_{name}"] = {
            "action": "send",
            "summary": f"Published by the {et.producer} service through its outbox.",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": version,
            "description": "CloudEvents 1.0 structured JSON on a RabbitMQ topic exchange.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "rabbitmq": {"host": "rabbitmq:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _envelope_schema() -> dict[str, Any]:
    schema = Envelope.model_json_schema()
    schema.pop("title", None)
    return schema
