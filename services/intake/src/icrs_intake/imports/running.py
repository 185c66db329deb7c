"""The imports this process is running: their tasks, a bound on how many run at once,
and what tells an import that stopped elsewhere (a restart, a crash) from a live one.

The registry lives in `runtime.extras` from the start of the app to its end; when the app
stops, running imports are cancelled and marked `interrupted`. An import whose process
died without that is found out when it is read: `running` with no task here and no
progress for `STALLED_AFTER` seconds (another replica may be running it) reads as
`interrupted`. Posting the file again is harmless: imports are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from icrs_shared.errors import TooManyRequests
from icrs_shared.runtime import Runtime

log = logging.getLogger(__name__)

#: Most imports one process runs (or receives) at once; more answer 429.
MAX_RUNNING = 4
#: Seconds without progress after which a `running` import with no task here is
#: taken as interrupted.
STALLED_AFTER = 60.0
#: Seconds the app waits, when it stops, for cancelled imports to record it.
STOP_TIMEOUT = 10.0

_EXTRA = "imports.running"


class Slot:
    """A place among the `MAX_RUNNING`, held from the upload to the end of the import."""

    def __init__(self, owner: RunningImports) -> None:
        self._owner: RunningImports | None = owner

    def release(self) -> None:
        if self._owner is not None:
            self._owner._reserved -= 1
            self._owner = None


class RunningImports:
    def __init__(self) -> None:
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._reserved = 0
        self._progress: dict[uuid.UUID, tuple[int, float]] = {}
        self._stopping = False

    def reserve(self) -> Slot:
        if self._stopping or self._reserved >= MAX_RUNNING:
            raise TooManyRequests(
                f"{MAX_RUNNING} imports are running already: try again in a minute",
                headers={"Retry-After": "60"},
            )
        self._reserved += 1
        return Slot(self)

    def launch(
        self,
        import_id: uuid.UUID,
        work: Coroutine[Any, Any, None],
        *,
        cleanup: Callable[[], None],
    ) -> None:
        """Run `work` as a task of this process; `cleanup` once it is over, however
        it ends (also when it is cancelled before it starts)."""
        task = asyncio.create_task(work, name=f"import:{import_id}")
        self._tasks[import_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(import_id, None)
            cleanup()

        task.add_done_callback(done)

    def is_running(self, import_id: uuid.UUID) -> bool:
        return import_id in self._tasks

    def stalled(self, import_id: uuid.UUID, rows: int) -> bool:
        """Whether an import running elsewhere made no progress for `STALLED_AFTER`
        seconds, as far as this process has seen."""
        now = time.monotonic()
        seen = self._progress.get(import_id)
        if seen is None or seen[0] != rows:
            seen = self._progress[import_id] = (rows, now)
        return now - seen[1] >= STALLED_AFTER

    def forget(self, import_id: uuid.UUID) -> None:
        self._progress.pop(import_id, None)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if pending:
                log.warning("imports did not stop in time", extra={"count": len(pending)})


def running_of(runtime: Runtime) -> RunningImports:
    running = runtime.extras.get(_EXTRA)
    if not isinstance(running, RunningImports):
        raise RuntimeError("the imports registry has not been started")
    return running


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The registry's life: inside the app's own, so the database outlives the imports."""
    runtime: Runtime = app.state.runtime
    running = runtime.extras[_EXTRA] = RunningImports()
    try:
        yield
    finally:
        await running.stop()
        del runtime.extras[_EXTRA]
