from __future__ import annotations

import io
import json
import logging
import math
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from icrs_shared.logs import JsonFormatter, TextFormatter, configure_logging
from icrs_shared.middleware import install_observability
from icrs_shared.settings import Settings
from icrs_shared.telemetry import setup_tracing, tracer

NAME = "Amina Hassan"
EXPORTER = InMemorySpanExporter()


@pytest.fixture(autouse=True)
def tracing() -> None:
    setup_tracing("test", exporter=EXPORTER)


@pytest.fixture
def logging_state() -> Iterator[None]:
    """Put back what configure_logging changes on the process's loggers."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")
    saved = [(root, root.handlers[:], root.level, root.propagate, root.disabled)]
    for name in names:
        lg = logging.getLogger(name)
        saved.append((lg, lg.handlers[:], lg.level, lg.propagate, lg.disabled))
    yield
    for lg, handlers, level, propagate, disabled in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


def record(msg: str = "hello", level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("icrs.test", level, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def failing_record(*, with_traceback: bool = True) -> logging.LogRecord:
    try:
        try:
            raise KeyError(NAME)
        except KeyError as inner:
            raise ValueError(NAME) from inner
    except ValueError as exc:
        exc_info = (ValueError, exc, exc.__traceback__ if with_traceback else None)
        log = logging.getLogger("icrs.test")
        return log.makeRecord(log.name, logging.ERROR, __file__, 1, "failed", (), exc_info)


def test_json_line_has_the_base_fields() -> None:
    line = JsonFormatter(service="intake").format(record("hello"))

    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "hello"
    assert out["level"] == "INFO"
    assert out["logger"] == "icrs.test"
    assert out["service"] == "intake"
    assert out["time"].endswith("Z")
    assert datetime.fromisoformat(out["time"]).utcoffset() is not None
    assert "trace_id" not in out


def test_json_line_carries_the_current_span_ids() -> None:
    with tracer().start_as_current_span("work") as span:
        out = json.loads(JsonFormatter().format(record()))

    ctx = span.get_span_context()
    assert out["trace_id"] == trace.format_trace_id(ctx.trace_id)
    assert out["span_id"] == trace.format_span_id(ctx.span_id)
    assert "service" not in out


def test_extras_are_kept_and_made_json_safe() -> None:
    case_id = uuid.uuid4()
    rec = record(
        case_id=case_id,
        attempt=2,
        ratio=math.nan,
        tags=("a", 1),
        detail={"n": 1, 2: object},
        logger="forged",
    )

    out = json.loads(JsonFormatter().format(rec))

    assert out["case_id"] == str(case_id)
    assert out["attempt"] == 2
    assert out["ratio"] == "nan"
    assert out["tags"] == ["a", 1]
    assert out["detail"] == {"n": 1, "2": str(object)}
    assert out["logger"] == "icrs.test"  # an extra cannot overwrite a base field


def test_exception_gives_type_and_frames_but_not_its_message() -> None:
    rec = failing_record()

    line = JsonFormatter().format(rec)

    assert "Amina" not in line
    out = json.loads(line)
    assert out["error_type"] == "ValueError"
    assert out["error_chain"] == ["KeyError"]
    [frame] = out["traceback"]
    assert frame["function"] == "failing_record"
    assert frame["file"] == __file__
    assert isinstance(frame["line"], int)


def test_suppressed_context_is_not_in_the_chain() -> None:
    try:
        try:
            raise KeyError(NAME)
        except KeyError:
            raise ValueError(NAME) from None
    except ValueError as exc:
        out = json.loads(JsonFormatter().format(record(exc_info=(ValueError, exc, None))))

    assert out["error_type"] == "ValueError"
    assert "error_chain" not in out


def test_exception_message_stays_out_even_when_cached_by_another_formatter() -> None:
    rec = failing_record()
    assert NAME in logging.Formatter().format(rec)  # caches the full traceback on the record

    assert "Amina" not in JsonFormatter().format(rec)
    assert "Amina" not in TextFormatter().format(rec)


def test_exception_without_traceback_still_gives_frames() -> None:
    # How errors.py logs an unhandled error: exc_info with no traceback.
    rec = failing_record(with_traceback=False)

    out = json.loads(JsonFormatter().format(rec))

    assert out["error_type"] == "ValueError"
    assert out["traceback"][0]["function"] == "failing_record"


def test_text_line_has_fields_and_frames_without_the_message() -> None:
    rec = failing_record()
    rec.__dict__["consumer"] = "routing consumer"

    with tracer().start_as_current_span("work") as span:
        text = TextFormatter(service="intake").format(rec)

    head, *rest = text.splitlines()
    assert " ERROR icrs.test: failed " in head
    assert "service=intake" in head
    assert 'consumer="routing consumer"' in head
    assert f"trace_id={trace.format_trace_id(span.get_span_context().trace_id)}" in head
    assert "error_type=ValueError" in head
    assert any("in failing_record" in line for line in rest)
    assert rest[-1] == "ValueError"
    assert "Amina" not in text


def test_configure_logging_is_idempotent(logging_state: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(Settings(log_level="debug"), service="intake", stream=first)
    configure_logging(Settings(log_level="warning", log_format="text"), stream=second)

    logging.getLogger("icrs.test").warning("once")
    logging.getLogger("icrs.test").info("filtered out")

    assert first.getvalue() == ""
    [line] = second.getvalue().splitlines()
    assert line.endswith("WARNING icrs.test: once")
    assert logging.getLogger().level == logging.WARNING


def test_json_logging_one_object_per_line(logging_state: None) -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json"), service="intake", stream=stream)

    logging.getLogger("icrs.test").info("one", extra={"event_id": "e1"})
    logging.getLogger("icrs.test").info("two")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [o["message"] for o in lines] == ["one", "two"]
    assert lines[0]["event_id"] == "e1"
    assert lines[0]["service"] == "intake"


@pytest.mark.parametrize(("field", "value"), [("log_format", "xml"), ("log_level", "LOUD")])
def test_configure_logging_rejects_unknown_settings(
    logging_state: None, field: str, value: str
) -> None:
    settings = Settings().model_copy(update={field: value})
    with pytest.raises(ValueError, match=value):
        configure_logging(settings)


def test_uvicorn_access_is_silenced_and_errors_kept(logging_state: None) -> None:
    logging.getLogger("uvicorn.access").addHandler(logging.StreamHandler(io.StringIO()))
    stream = io.StringIO()
    configure_logging(Settings(), stream=stream)

    logging.getLogger("uvicorn.access").info('1.2.3.4 - "GET /v1/cases?name=Amina" 200')
    logging.getLogger("uvicorn.error").error("worker failed")

    access = logging.getLogger("uvicorn.access")
    assert access.disabled
    assert not access.handlers
    assert not access.propagate
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["logger"] == "uvicorn.error"


async def test_access_log_line_has_no_query_string(logging_state: None) -> None:
    app = FastAPI()

    @app.get("/v1/cases/{case_id}")
    async def read(case_id: str, name: str | None = None) -> dict[str, str]:
        return {"id": case_id}

    install_observability(app, "test")
    stream = io.StringIO()
    configure_logging(Settings(), service="intake", stream=stream)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/v1/cases/c-42", params={"name": NAME})

    # One line: httpx's own request line (with the query string) is quietened too.
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["logger"] == "icrs.access"
    assert line["message"] == "GET /v1/cases/{case_id} 200"
    assert line["route"] == "/v1/cases/{case_id}"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert len(line["trace_id"]) == 32
    raw = stream.getvalue()
    for leak in ("Amina", "name=", "c-42", "127.0.0.1"):
        assert leak not in raw
