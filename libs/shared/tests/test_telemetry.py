from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import StreamingResponse
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from icrs_shared.middleware import install_observability
from icrs_shared.telemetry import (
    consume_span,
    context_from_traceparent,
    current_traceparent,
    otlp_processor,
    publish_span,
    setup_tracing,
    tracer,
)

# The global tracer provider is set once per process: every test shares this exporter.
EXPORTER = InMemorySpanExporter()
NAME = "Amina Hassan"
REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_SPAN = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    setup_tracing("test", exporter=EXPORTER)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def make_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/items")

    @router.get("/{item_id:int}")
    async def get_item(item_id: int, name: str | None = None) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/items/{item_id}")
    async def get_direct(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/unavailable")
    async def unavailable() -> Response:
        return Response(status_code=503)

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError(NAME)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"chunk{i};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    app.include_router(router, prefix="/v1")
    install_observability(app, "test")
    return app


async def get(app: FastAPI, url: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(url, **kwargs)  # type: ignore[arg-type]


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def everything_recorded(span: ReadableSpan) -> str:
    parts = [span.name, repr(dict(span.attributes or {})), repr(span.status.description)]
    parts += [repr(dict(e.attributes or {})) for e in span.events]
    return " ".join(parts)


async def test_server_span_named_by_route_template(spans: InMemorySpanExporter) -> None:
    response = await get(make_app(), "/items/abc-123")

    assert response.status_code == 200
    [span] = server_spans(spans)
    assert span.name == "GET /items/{item_id}"
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET


async def test_included_router_template_has_its_prefix(spans: InMemorySpanExporter) -> None:
    await get(make_app(), "/v1/items/7")

    [span] = server_spans(spans)
    assert span.name == "GET /v1/items/{item_id}"


async def test_query_string_and_raw_path_are_never_recorded(spans: InMemorySpanExporter) -> None:
    await get(make_app(), "/v1/items/7", params={"name": NAME})

    recorded = [everything_recorded(s) for s in spans.get_finished_spans()]
    # One server span: FastAPI's own (which records url.query) is switched off.
    assert len(server_spans(spans)) == 1
    assert recorded
    for text in recorded:
        assert "Amina" not in text
        assert "name=" not in text
        assert "/v1/items/7" not in text


async def test_unmatched_request_keeps_only_the_method(spans: InMemorySpanExporter) -> None:
    response = await get(make_app(), "/nowhere/42")

    assert response.status_code == 404
    [span] = server_spans(spans)
    assert span.name == "GET"
    assert span.attributes is not None
    assert "http.route" not in span.attributes
    assert span.attributes["http.response.status_code"] == 404
    assert span.status.status_code is StatusCode.UNSET


async def test_incoming_traceparent_makes_a_child_span(spans: InMemorySpanExporter) -> None:
    headers = {"traceparent": f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"}
    await get(make_app(), "/items/1", headers=headers)

    [span] = server_spans(spans)
    assert span.context is not None
    assert span.parent is not None
    assert trace.format_trace_id(span.context.trace_id) == REMOTE_TRACE
    assert trace.format_span_id(span.parent.span_id) == REMOTE_SPAN
    assert span.parent.is_remote


async def test_invalid_traceparent_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    await get(make_app(), "/items/1", headers={"traceparent": "00-garbage-01"})

    [span] = server_spans(spans)
    assert span.parent is None


async def test_server_error_status_marks_the_span(spans: InMemorySpanExporter) -> None:
    await get(make_app(), "/unavailable")

    [span] = server_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 503
    assert span.attributes["error.type"] == "503"


async def test_unhandled_exception_marks_the_span_without_its_message(
    spans: InMemorySpanExporter,
) -> None:
    response = await get(make_app(), "/boom")

    assert response.status_code == 500
    [span] = server_spans(spans)
    assert span.name == "GET /boom"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "ValueError"
    assert "Amina" not in everything_recorded(span)
    assert any(e.name == "exception" for e in span.events)


async def test_streaming_response_passes_through(spans: InMemorySpanExporter) -> None:
    response = await get(make_app(), "/stream")

    assert response.text == "chunk0;chunk1;chunk2;"
    [span] = server_spans(spans)
    assert span.name == "GET /stream"


async def test_mounted_apps_make_one_span_with_the_full_template(
    spans: InMemorySpanExporter,
) -> None:
    outer = FastAPI()
    install_observability(outer, "test")
    outer.mount("/m", make_app())

    await get(outer, "/m/v1/items/5")

    [span] = server_spans(spans)
    assert span.name == "GET /m/v1/items/{item_id}"


async def test_access_log_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="icrs.access"):
        await get(make_app(), "/v1/items/7", params={"name": NAME})

    [record] = [r for r in caplog.records if r.name == "icrs.access"]
    assert record.getMessage() == "GET /v1/items/{item_id} 200"
    assert record.__dict__["method"] == "GET"
    assert record.__dict__["route"] == "/v1/items/{item_id}"
    assert record.__dict__["status"] == 200
    assert record.__dict__["duration_ms"] >= 0
    everything = repr(record.__dict__)
    assert "Amina" not in everything
    assert "127.0.0.1" not in everything  # the test transport's client address


def test_current_traceparent_names_the_current_span() -> None:
    assert current_traceparent() is None
    with tracer().start_as_current_span("work") as span:
        value = current_traceparent()

    assert value is not None
    version, trace_id, span_id, _flags = value.split("-")
    assert version == "00"
    assert trace_id == trace.format_trace_id(span.get_span_context().trace_id)
    assert span_id == trace.format_span_id(span.get_span_context().span_id)


@pytest.mark.parametrize("value", [None, "", "not-a-traceparent", f"00-{'0' * 32}-{'0' * 16}-01"])
def test_context_from_bad_traceparent_is_empty(value: str | None) -> None:
    context = context_from_traceparent(value)

    assert not trace.get_current_span(context).get_span_context().is_valid


def test_context_from_traceparent_names_the_remote_parent() -> None:
    context = context_from_traceparent(f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01")

    parent = trace.get_current_span(context).get_span_context()
    assert parent.is_valid
    assert parent.is_remote
    assert trace.format_trace_id(parent.trace_id) == REMOTE_TRACE


def test_consumer_span_continues_the_publishers_trace(spans: InMemorySpanExporter) -> None:
    with publish_span("icrs.case.registered", "ev-1", None) as published:
        traceparent = current_traceparent()
    with consume_span("routing", "icrs.case.registered", "ev-1", traceparent):
        pass

    by_kind = {s.kind: s for s in spans.get_finished_spans()}
    producer, consumer = by_kind[SpanKind.PRODUCER], by_kind[SpanKind.CONSUMER]
    assert producer.name == "publish icrs.case.registered"
    assert consumer.name == "process icrs.case.registered"
    assert producer.context is not None
    assert consumer.context is not None
    assert consumer.parent is not None
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent.span_id == published.get_span_context().span_id
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.system"] == "rabbitmq"
    assert consumer.attributes["messaging.message.id"] == "ev-1"
    assert consumer.attributes["messaging.consumer.group.name"] == "routing"
    assert consumer.attributes["messaging.rabbitmq.destination.routing_key"] == "case.registered"


def test_publish_span_is_a_child_of_the_events_origin(spans: InMemorySpanExporter) -> None:
    origin = f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"
    with publish_span("icrs.case.registered", "ev-2", origin, system="in-process"):
        pass

    [span] = spans.get_finished_spans()
    assert span.kind is SpanKind.PRODUCER
    assert span.context is not None
    assert span.parent is not None
    assert trace.format_trace_id(span.context.trace_id) == REMOTE_TRACE
    assert trace.format_span_id(span.parent.span_id) == REMOTE_SPAN
    assert span.attributes is not None
    assert span.attributes["messaging.system"] == "in-process"
    assert "messaging.rabbitmq.destination.routing_key" not in span.attributes


def test_event_without_traceparent_starts_a_new_trace(spans: InMemorySpanExporter) -> None:
    with tracer().start_as_current_span("unrelated"), consume_span("c", "icrs.x.y", "e", None):
        pass

    consumer = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    assert consumer.parent is None


def test_failed_handler_marks_the_span_without_the_message(spans: InMemorySpanExporter) -> None:
    with (
        pytest.raises(ValueError, match="Amina"),
        consume_span("c", "icrs.case.registered", "e", None),
    ):
        raise ValueError(NAME)

    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ValueError"
    assert "Amina" not in everything_recorded(span)


def test_setup_tracing_is_once_per_process(spans: InMemorySpanExporter) -> None:
    first = setup_tracing("other", exporter=EXPORTER)
    second = setup_tracing("another")
    with tracer().start_as_current_span("once"):
        pass

    assert first is second
    assert first is trace.get_tracer_provider()
    # The same exporter attached twice would see each span twice.
    assert len(spans.get_finished_spans()) == 1


def test_otlp_export_only_when_an_endpoint_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert otlp_processor() is None

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces")
    processor = otlp_processor()
    assert processor is not None
    assert type(processor).__name__ == BatchSpanProcessor.__name__
    processor.shutdown()  # stops its worker thread

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert otlp_processor() is None
