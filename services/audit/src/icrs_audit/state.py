"""What the audit service holds while it runs: its signer, appender and checkpointer."""

from __future__ import annotations

from dataclasses import dataclass

from icrs_shared.db import Database
from icrs_shared.events import Envelope
from icrs_shared.runtime import Runtime

from . import checkpoints
from .appender import Appender
from .checkpoints import Checkpointer
from .note import Signer
from .settings import AuditSettings
from .signing_key import from_seed_b64, load_or_create

_EXTRA = "audit_log"
#: The consumer that appends every event of the platform to the log.
CONSUMER = "log"


@dataclass
class AuditLog:
    signer: Signer
    appender: Appender
    checkpointer: Checkpointer


def audit_log(runtime: Runtime) -> AuditLog:
    state = runtime.extras.get(_EXTRA)
    if not isinstance(state, AuditLog):
        raise RuntimeError("the audit log has not started")
    return state


def make_signer(settings: AuditSettings, origin: str) -> Signer:
    if settings.audit_signing_key is not None:
        key = from_seed_b64(settings.audit_signing_key.get_secret_value())
    else:
        key = load_or_create(settings.data_dir / "audit-signing.key")
    return Signer(key, origin)


async def log_origin(db: Database, settings: AuditSettings) -> str:
    """The log's origin: the one its checkpoints carry once it has any (a log keeps its
    name whatever the public URL becomes), else the configured one."""
    async with db.sessions() as session:
        last = await checkpoints.latest(session)
    if last is None:
        return settings.origin
    origin = last.note.split("\n", 1)[0]
    if settings.audit_origin is not None and settings.audit_origin != origin:
        raise ValueError(
            f"ICRS_AUDIT_ORIGIN is {settings.audit_origin!r} but this log's origin is "
            f"{origin!r}: a log keeps its origin"
        )
    return origin


async def start_audit_log(runtime: Runtime) -> None:
    settings = runtime.settings
    if not isinstance(settings, AuditSettings):
        raise TypeError("the audit service runs with AuditSettings")
    origin = await log_origin(runtime.db, settings)
    signer = make_signer(settings, origin)
    appender = Appender(
        runtime.db, batch_size=settings.audit_batch_size, batch_wait=settings.audit_batch_wait
    )
    checkpointer = Checkpointer(
        runtime.db, signer, origin, interval=settings.audit_checkpoint_interval
    )
    runtime.extras[_EXTRA] = AuditLog(signer, appender, checkpointer)
    await appender.start()
    await checkpointer.start()

    async def append(envelope: Envelope) -> None:
        await appender.append(envelope)

    # As many deliveries at once as a batch holds, so that batches can fill.
    await runtime.bus.subscribe(
        "audit", CONSUMER, ["#"], append, concurrency=settings.audit_batch_size
    )


async def stop_audit_log(runtime: Runtime) -> None:
    state = runtime.extras.pop(_EXTRA, None)
    if isinstance(state, AuditLog):
        await state.checkpointer.stop()
        await state.appender.stop()
