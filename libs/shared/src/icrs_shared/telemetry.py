"""Tracing: the process's tracer provider, W3C trace context for events, messaging spans.

Spans never carry payloads, query strings or exception messages: only types and frames.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_NAMESPACE, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from .logs import error_type

TRACER_NAME = "icrs"
TRACEPARENT = "traceparent"

log = logging.getLogger(__name__)

# Only W3C trace context: events and partners' requests carry `traceparent` (and
# `tracestate`), never baggage, whatever OTEL_PROPAGATORS says.
_W3C = TraceContextTextMapPropagator()

_lock = threading.Lock()
_provider: TracerProvider | None = None
_owned = False
_otlp_added = False
_exporters: set[int] = set()


def setup_tracing(service_name: str, *, exporter: SpanExporter | None = None) -> TracerProvider:
    """The process's tracer provider, made and set globally on the first call.

    The global provider can be set only once per process, so the first call's name
    becomes `service.name` (unless OTEL_SERVICE_NAME says otherwise); later calls return
    the same provider and attach `exporter` (tests pass an in-memory one). Spans go to
    OTLP over HTTP only when an OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set at call time.
    """
    global _provider, _otlp_added
    with _lock:
        if _provider is None:
            _provider = _install(service_name)
        provider = _provider
        if _owned and not _otlp_added:
            processor = otlp_processor()
            if processor is not None:
                provider.add_span_processor(processor)
                _otlp_added = True
        if exporter is not None and id(exporter) not in _exporters:
            _exporters.add(id(exporter))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _install(service_name: str) -> TracerProvider:
    global _owned
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # Set up by someone else (e.g. `opentelemetry-instrument`): theirs, exporters too.
        return current
    resource = Resource.create(
        {
            SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name,
            SERVICE_NAMESPACE: "icrs",
        }
    )
    provider = TracerProvider(resource=resource)
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        log.warning("a non-SDK tracer provider is already set; spans will not be exported")
    _owned = True
    return provider


def otlp_processor() -> SpanProcessor | None:
    """A batching OTLP/HTTP exporter when the standard environment asks for one."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        return None
    # Imported here: it pulls in requests and protobuf, which a process without a
    # collector never needs.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


def shutdown_tracing(timeout_millis: int = 5000) -> None:
    """Export what is buffered. The provider itself shuts down at process exit,
    since the global one cannot be replaced by a new one afterwards."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


@functools.cache
def tracer() -> trace.Tracer:
    # A proxy until `setup_tracing` runs, then it forwards to the real provider.
    return trace.get_tracer(TRACER_NAME)


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get(TRACEPARENT)


def context_from_traceparent(value: str | None) -> Context:
    if not value:
        return Context()
    return context_from_headers({TRACEPARENT: value})


def context_from_headers(headers: Mapping[str, str]) -> Context:
    """The remote parent named by `traceparent`/`tracestate` (lower-case keys), if valid."""
    return _W3C.extract(dict(headers), context=Context())


def record_error(span: Span, exc: BaseException) -> None:
    """Mark `span` failed by `exc` without its message, which may hold personal data."""
    kind = error_type(exc)
    span.set_status(Status(StatusCode.ERROR, kind))
    span.set_attribute("error.type", kind)
    stack = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    span.add_event("exception", {"exception.type": kind, "exception.stacktrace": stack})


@contextmanager
def _span(
    name: str, kind: SpanKind, parent: Context, attributes: Mapping[str, AttributeValue]
) -> Iterator[Span]:
    # The SDK's own exception recording would copy str(exc) into the span.
    with tracer().start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            record_error(span, exc)
            raise


def _messaging_attributes(
    event_type: str, event_id: str, system: str, destination: str, operation: str
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "messaging.system": system,
        "messaging.destination.name": destination,
        "messaging.message.id": event_id,
        "messaging.operation.name": operation,
        "messaging.operation.type": "send" if operation == "publish" else "process",
        "cloudevents.event_type": event_type,
    }
    if system == "rabbitmq":
        routing_key = event_type.removeprefix("icrs.")
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    return attributes


@contextmanager
def publish_span(
    event_type: str,
    event_id: str,
    traceparent: str | None,
    *,
    system: str = "rabbitmq",
    destination: str = "icrs.events",
) -> Iterator[Span]:
    """A PRODUCER span for one event, child of the context the event was created in."""
    attributes = _messaging_attributes(event_type, event_id, system, destination, "publish")
    parent = context_from_traceparent(traceparent)
    with _span(f"publish {event_type}", SpanKind.PRODUCER, parent, attributes) as span:
        yield span


@contextmanager
def consume_span(
    consumer: str,
    event_type: str,
    event_id: str,
    traceparent: str | None,
    *,
    system: str = "rabbitmq",
    destination: str = "icrs.events",
) -> Iterator[Span]:
    """A CONSUMER span for one handling of an event by `consumer`."""
    attributes = _messaging_attributes(event_type, event_id, system, destination, "process")
    attributes["messaging.consumer.group.name"] = consumer
    parent = context_from_traceparent(traceparent)
    with _span(f"process {event_type}", SpanKind.CONSUMER, parent, attributes) as span:
        yield span
