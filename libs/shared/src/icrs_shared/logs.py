"""Process logging: one JSON object (or one text line) per record, correlated with traces.

Exception messages never reach the output, only the exception's type and its frames:
messages such as database integrity errors can quote the personal data that caused them.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any

from opentelemetry import trace

from .settings import Settings

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_FORMATS = ("json", "text")


def error_type(exc: BaseException) -> str:
    """`ValueError` for builtins, `sqlalchemy.exc.IntegrityError` for the rest."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _frames(tb: TracebackType | None) -> list[dict[str, Any]]:
    return [
        {"file": f.filename, "line": f.lineno, "function": f.name} for f in traceback.extract_tb(tb)
    ]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = {id(exc)}
    nxt = _parent(exc)
    while nxt is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        yield nxt
        nxt = _parent(nxt)


def _parent(exc: BaseException) -> BaseException | None:
    if exc.__cause__ is not None or exc.__suppress_context__:
        return exc.__cause__
    return exc.__context__


def exception_fields(exc: BaseException, tb: TracebackType | None = None) -> dict[str, Any]:
    """What a log line may say about an exception: types and frames, never messages."""
    fields: dict[str, Any] = {"error_type": error_type(exc)}
    tb = tb or exc.__traceback__
    if tb is not None:
        fields["traceback"] = _frames(tb)
    chain = [error_type(e) for e in _chain(exc)]
    if chain:
        fields["error_chain"] = chain
    return fields


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _trace_ids() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {
        "trace_id": trace.format_trace_id(ctx.trace_id),
        "span_id": trace.format_span_id(ctx.span_id),
    }


def _record_fields(record: logging.LogRecord, service: str | None) -> dict[str, Any]:
    when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    fields: dict[str, Any] = {
        "time": when.replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    if service:
        fields["service"] = service
    fields.update(_trace_ids())
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRS and key not in fields:
            fields[key] = _jsonable(value)
    # Wins over an `error_type` extra. Callers that passed no traceback only to keep the
    # message out (the default formatter prints it) still get the frames.
    if record.exc_info and record.exc_info[1] is not None:
        fields.update(exception_fields(record.exc_info[1], record.exc_info[2]))
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


class JsonFormatter(logging.Formatter):
    def __init__(self, *, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_record_fields(record, self.service), default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, then the frames of an exception."""

    _HEAD = ("time", "level", "logger", "message", "traceback", "stack")

    def __init__(self, *, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        fields = _record_fields(record, self.service)
        line = f"{fields['time']} {fields['level']} {fields['logger']}: {fields['message']}"
        pairs = [f"{k}={_text_value(v)}" for k, v in fields.items() if k not in self._HEAD]
        lines = [" ".join([line, *pairs])]
        if "traceback" in fields:
            lines.append("Traceback (most recent call last):")
            lines += [
                f'  File "{f["file"]}", line {f["line"]}, in {f["function"]}'
                for f in fields["traceback"]
            ]
            lines.append(fields["error_type"])
        if "stack" in fields:
            lines.append(fields["stack"])
        return "\n".join(lines)


def _text_value(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    return json.dumps(value, default=str)


class _Handler(logging.StreamHandler[IO[str]]):
    """Ours, so a second `configure_logging` replaces it instead of adding another."""


def configure_logging(
    settings: Settings, *, service: str | None = None, stream: IO[str] | None = None
) -> None:
    """Send every logger's records to one handler on the root logger (stderr by default)."""
    fmt = settings.log_format.lower()
    if fmt not in _FORMATS:
        raise ValueError(f"log format must be one of {_FORMATS}, not {settings.log_format!r}")
    level = settings.log_level.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"unknown log level {settings.log_level!r}")

    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        JsonFormatter(service=service) if fmt == "json" else TextFormatter(service=service)
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    _route_uvicorn_logs()
    # HTTP clients log every request's full URL (query string included) at INFO.
    quiet = max(logging.getLevelNamesMapping()[level], logging.WARNING)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


def _route_uvicorn_logs() -> None:
    # uvicorn's access lines carry the query string and the client address; our
    # middleware logs each request without either.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
