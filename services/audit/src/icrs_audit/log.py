"""The log in the database: appending batches of events, and reading roots and proofs
from the stored hashes of perfect subtrees, so that a proof costs one query of
O(log n) rows at any size."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import rfc8785
from sqlalchemy import Table, bindparam, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.errors import DomainError
from icrs_shared.events import Envelope

from . import merkle
from .merkle import Frontier, Node
from .models import LogEntry, LogHead, LogNode

T = TypeVar("T")


class ProofRangeError(DomainError):
    status, code, title = 400, "proof-out-of-range", "Proof out of range"


def _table(model: type[object]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


# The append path's statements, made once and on the tables (Core, not the ORM): an
# append costs each one's execution only.
_ENTRIES, _NODES, _HEAD = _table(LogEntry), _table(LogNode), _table(LogHead)
_SIZE = select(_HEAD.c.size).where(_HEAD.c.id == 1)
_SIZE_LOCKED = _SIZE.with_for_update()
_KNOWN = select(_ENTRIES.c.event_id, _ENTRIES.c.idx).where(
    _ENTRIES.c.event_id.in_(bindparam("ids", expanding=True))
)
_INSERT_ENTRIES = insert(_ENTRIES)
_INSERT_NODES = insert(_NODES)
_SET_SIZE = update(_HEAD).where(_HEAD.c.id == 1).values(size=bindparam("new_size"))


def leaf_data(envelope: Envelope) -> bytes:
    """The RFC 8785 canonical JSON of the envelope as it travels (contract §8)."""
    return rfc8785.dumps(json.loads(envelope.to_json()))


async def lock_size(session: AsyncSession) -> int:
    """The log's size, with its head row locked until the transaction ends (on SQLite
    the transaction already holds the write lock)."""
    locked = session.get_bind().dialect.name == "postgresql"
    size: int = (await session.execute(_SIZE_LOCKED if locked else _SIZE)).scalar_one()
    return size


async def size(session: AsyncSession) -> int:
    query = select(col(LogHead.size)).where(col(LogHead.id) == 1)
    value: int = (await session.execute(query)).scalar_one()
    return value


async def load_frontier(session: AsyncSession, size: int) -> Frontier:
    """The right edge of the stored tree of `size` entries: what appending goes on from."""
    nodes = merkle.frontier_nodes(size)
    hashes = await read_nodes(session, nodes)
    return Frontier.from_hashes(size, [hashes[n] for n in nodes])


async def append(
    session: AsyncSession, envelopes: Sequence[Envelope], cached: Frontier | None
) -> tuple[list[int], Frontier]:
    """Append the envelopes not yet in the log, in order; return each one's index (an
    envelope already in the log, or twice in the batch, gets its first index) and the
    new right edge. `cached` is the caller's, used (not changed) while still current."""
    # Leaves and their hashes before the log's head is locked: replicas make theirs side
    # by side, and hold the lock only to place them.
    leaves = {e.id: leaf_data(e) for e in envelopes}
    hashes = {i: merkle.leaf_hash(leaf) for i, leaf in leaves.items()}
    current = await lock_size(session)
    if cached is None or cached.size != current:
        tail = await load_frontier(session, current)
    else:
        tail = Frontier.from_hashes(current, cached.hashes)
    ids = [e.id for e in envelopes]
    known: dict[uuid.UUID, int] = {}
    for chunk in _chunks(list(dict.fromkeys(ids)), 1000):
        rows = await session.execute(_KNOWN, {"ids": chunk})
        known.update({event_id: idx for event_id, idx in rows.all()})
    now = datetime.now(UTC)
    entries: list[dict[str, object]] = []
    nodes: list[dict[str, object]] = []
    for envelope in envelopes:
        if envelope.id in known:
            continue
        leaf = leaves[envelope.id]
        known[envelope.id] = tail.size
        entries.append(
            {
                "idx": tail.size,
                "event_id": envelope.id,
                "leaf": leaf,
                "type": envelope.type,
                "subject": envelope.subject,
                "actor": envelope.actor,
                "time": envelope.time,
                "appended_at": now,
            }
        )
        for (level, index), digest in tail.append(hashes[envelope.id]):
            nodes.append({"level": level, "idx": index, "hash": digest})
    if entries:
        await session.execute(_INSERT_ENTRIES, entries)
        await session.execute(_INSERT_NODES, nodes)
        await session.execute(_SET_SIZE, {"new_size": tail.size})
    return [known[i] for i in ids], tail


async def read_nodes(session: AsyncSession, nodes: Iterable[Node]) -> dict[Node, bytes]:
    """The stored hashes of `nodes`, in one query per thousand."""
    wanted = list(dict.fromkeys(nodes))
    found: dict[Node, bytes] = {}
    for chunk in _chunks(wanted, 1000):
        key = tuple_(col(LogNode.level), col(LogNode.idx))
        rows = await session.execute(
            select(col(LogNode.level), col(LogNode.idx), col(LogNode.hash)).where(key.in_(chunk))
        )
        found.update({(level, idx): digest for level, idx, digest in rows.all()})
    missing = [n for n in wanted if n not in found]
    if missing:
        raise LookupError(f"the log lacks tree nodes {missing[:5]}")
    return found


async def root(session: AsyncSession, tree_size: int) -> bytes:
    if tree_size == 0:
        return merkle.EMPTY_ROOT
    plan = merkle.root_plan(tree_size)
    hashes = await read_nodes(session, plan)
    return merkle.fold([hashes[n] for n in plan])


async def inclusion_proof(
    session: AsyncSession, index: int, tree_size: int
) -> tuple[bytes, list[bytes]]:
    """The leaf hash at `index` and its audit path in the tree of `tree_size` leaves."""
    current = await size(session)
    if not 0 <= index < tree_size <= current:
        raise ProofRangeError(
            f"need 0 <= index < tree_size <= {current} (the log's size)",
            extra={"size": current},
        )
    plan = merkle.inclusion_plan(index, tree_size)
    hashes = await read_nodes(session, [(0, index), *(n for part in plan for n in part)])
    return hashes[(0, index)], merkle.assemble(plan, hashes)


async def consistency_proof(session: AsyncSession, first: int, second: int) -> list[bytes]:
    current = await size(session)
    if not 0 < first <= second <= current:
        raise ProofRangeError(
            f"need 0 < first <= second <= {current} (the log's size)", extra={"size": current}
        )
    plan = merkle.consistency_plan(first, second)
    hashes = await read_nodes(session, (n for part in plan for n in part))
    return merkle.assemble(plan, hashes)


async def count_entries(session: AsyncSession) -> int:
    value: int = (await session.execute(select(func.count()).select_from(LogEntry))).scalar_one()
    return value


def _chunks(items: list[T], n: int) -> Iterable[list[T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
