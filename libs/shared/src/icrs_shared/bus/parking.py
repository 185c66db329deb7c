"""The one-process default's parking files, in the parking directory:

- `<service>.jsonl`: a JSON line for each message one of the service's consumers gave up
  on (the consumer, why, how many deliveries, when, the error's type and the event);
- `<service>.replay.jsonl`: the lines an operator put back (`icrs parked replay`), for the
  running platform to take in;
- `<service>.replaying.jsonl`: the lines the platform has taken in and not yet handled; a
  platform stopped in between hands them to its consumers again when it next starts
  (their inboxes make a second handling harmless).

Every change holds an exclusive lock (`flock`) on `<dir>/.lock`, so a line the platform
appends while the command rewrites a file is not lost.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from .base import Parked

Line = dict[str, Any]

_PARKED = ".jsonl"
_REPLAY = ".replay.jsonl"
_REPLAYING = ".replaying.jsonl"


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the parking directory's lock (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path) -> list[Line]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(row) for row in text.splitlines() if row.strip()]


def _append(path: Path, lines: Collection[Line]) -> None:
    if lines:
        with path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(line) + "\n" for line in lines))


def _rewrite(path: Path, lines: Collection[Line]) -> None:
    if not lines:
        path.unlink(missing_ok=True)
        return
    spare = path.with_name(path.name + ".new")
    with spare.open("w", encoding="utf-8") as f:
        f.write("".join(json.dumps(line) + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    spare.replace(path)


def park(directory: Path, service: str, record: Parked) -> None:
    """Append a parked message's line to the service's file."""
    park_line(directory, service, as_line(record))


def park_line(directory: Path, service: str, line: Line) -> None:
    """Append a line to the service's file as it is (also one read back from a file)."""
    with locked(directory):
        _append(directory / f"{service}{_PARKED}", [line])


def parked(directory: Path, service: str) -> list[Parked]:
    """The messages the service's consumers gave up on, oldest first."""
    if not directory.is_dir():
        return []
    with locked(directory):
        return [as_parked(line) for line in _read(directory / f"{service}{_PARKED}")]


def waiting(directory: Path, service: str) -> list[Parked]:
    """The service's messages put back and not yet handled (the platform takes them in
    while it runs)."""
    if not directory.is_dir():
        return []
    with locked(directory):
        lines = _read(directory / f"{service}{_REPLAYING}")
        lines += _read(directory / f"{service}{_REPLAY}")
    return [as_parked(line) for line in lines]


def put_back(directory: Path, service: str, event_ids: Collection[str] | None) -> list[Parked]:
    """Move the service's parked lines of `event_ids` (every line with None) to its replay
    file, for the running platform; what was moved."""
    if not directory.is_dir():
        return []
    with locked(directory):
        path = directory / f"{service}{_PARKED}"
        chosen: list[Line] = []
        kept: list[Line] = []
        for line in _read(path):
            wanted = event_ids is None or _event_id(line) in event_ids
            (chosen if wanted else kept).append(line)
        if chosen:
            _append(directory / f"{service}{_REPLAY}", chosen)
            _rewrite(path, kept)
    return [as_parked(line) for line in chosen]


def take_replays(directory: Path) -> dict[str, list[Line]]:
    """For the platform: every line put back or taken in and not yet handled, by service.
    Lines put back are moved to the service's `replaying` file first."""
    if not directory.is_dir():
        return {}
    with locked(directory):
        for path in directory.glob(f"*{_REPLAY}"):
            service = path.name.removesuffix(_REPLAY)
            _append(directory / f"{service}{_REPLAYING}", _read(path))
            path.unlink()
        return {
            path.name.removesuffix(_REPLAYING): _read(path)
            for path in sorted(directory.glob(f"*{_REPLAYING}"))
        }


def done_replaying(directory: Path, service: str, left: Collection[Line]) -> None:
    """The platform handled the service's taken-in lines but `left`: keep only those."""
    with locked(directory):
        _rewrite(directory / f"{service}{_REPLAYING}", left)


def as_line(record: Parked) -> Line:
    return {
        "consumer": record.consumer,
        "reason": record.reason,
        "deliveries": record.deliveries,
        "parked_at": record.parked_at.isoformat() if record.parked_at else None,
        "error_type": record.extra.get("error_type"),
        "event": json.loads(record.body),
    }


def as_parked(line: Line) -> Parked:
    event = line.get("event") or {}
    when = line.get("parked_at")
    return Parked(
        consumer=str(line.get("consumer", "")),
        reason=str(line.get("reason", "")),
        deliveries=int(line.get("deliveries", 0)),
        body=json.dumps(event).encode(),
        parked_at=datetime.fromisoformat(when) if when else None,
        event_id=_event_id(line),
        event_type=event.get("type"),
        extra={"error_type": str(line["error_type"])} if line.get("error_type") else {},
    )


def _event_id(line: Line) -> str | None:
    event = line.get("event") or {}
    value = event.get("id")
    return str(value) if value is not None else None
