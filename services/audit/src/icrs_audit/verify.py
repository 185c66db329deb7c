"""Checking the log from outside (`icrs audit verify`, over the API) and from inside
(`icrs audit fsck`, on the service's database): both rebuild the tree from every entry
and hold it against what was signed."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import rfc8785
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.db import Database

from . import merkle
from .models import Checkpoint as CheckpointRow
from .models import LogEntry, LogHead, LogNode
from .note import Checkpoint, NoteError, Verifier, open_checkpoint

_PAGE = 1000


@dataclass
class Report:
    """What a check found, in plain words."""

    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [f"  ok: {f}" for f in self.facts] + [f"  PROBLEM: {p}" for p in self.problems]
        verdict = (
            "The log checks out."
            if self.ok
            else f"The log does NOT check out: {len(self.problems)} problem(s) found."
        )
        return "\n".join([*lines, verdict]) + "\n"


@dataclass
class SavedCheckpoint:
    """The last checkpoint `verify` accepted, kept between runs (`--state FILE`)."""

    origin: str
    size: int
    root: str
    note: str
    verified_at: str

    @classmethod
    def load(cls, path: Path) -> SavedCheckpoint | None:
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @property
    def root_bytes(self) -> bytes:
        return base64.b64decode(self.root)


class Rebuild:
    """The tree rebuilt from entries given in index order; roots kept at `sizes`."""

    def __init__(self, report: Report, sizes: Iterable[int]) -> None:
        self.report = report
        self.frontier = merkle.Frontier()
        self.sizes = set(sizes)
        self.roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT} if 0 in self.sizes else {}
        self.broken = False

    def add(self, index: int, leaf: bytes, event: dict[str, Any] | None = None) -> bytes:
        """Take the next entry; returns its leaf hash."""
        expected = self.frontier.size
        if index != expected and not self.broken:
            self.broken = True
            if index > expected:
                self.report.problems.append(
                    f"entries {expected} to {index - 1} are missing: the next entry after "
                    f"{expected - 1} is {index}"
                )
            else:
                self.report.problems.append(f"entry {index} comes again after entry {expected - 1}")
        if event is not None and rfc8785.dumps(event) != leaf:
            self.report.problems.append(f"entry {index}'s event is not the event its leaf holds")
        digest = merkle.leaf_hash(leaf)
        self.frontier.append(digest)
        if self.frontier.size in self.sizes:
            self.roots[self.frontier.size] = self.frontier.root()
        return digest


# From outside ---------------------------------------------------------------------


async def verify_remote(
    http: httpx.AsyncClient, verifier: Verifier, state: Path | None = None
) -> Report:
    """Check the log the API serves against `verifier`'s key and the saved checkpoint."""
    report = Report()
    response = await http.get("/v1/log/checkpoint")
    response.raise_for_status()
    note = response.text
    try:
        checkpoint = open_checkpoint(note, verifier)
    except NoteError as exc:
        report.problems.append(f"the checkpoint's signature does not verify: {exc}")
        return report
    report.facts.append(
        f"the checkpoint of {checkpoint.size} entries is signed by {verifier.name} "
        f"(key {verifier.key_hash:08x})"
    )
    saved = SavedCheckpoint.load(state) if state is not None else None
    if saved is not None and saved.origin != checkpoint.origin:
        report.problems.append(
            f"the saved checkpoint is of the log {saved.origin!r}, "
            f"this one of {checkpoint.origin!r}"
        )
        return report
    if saved is not None and saved.size > checkpoint.size:
        report.problems.append(
            f"the log shrank: it held {saved.size} entries when checked on "
            f"{saved.verified_at}, and its checkpoint now says {checkpoint.size}"
        )
    sizes = {checkpoint.size} | ({saved.size} if saved is not None else set())
    rebuild = Rebuild(report, sizes)
    async for index, leaf, event in _served_entries(http, checkpoint.size):
        rebuild.add(index, leaf, event)
    _judge(report, rebuild, checkpoint.size, checkpoint.root, what="the checkpoint")
    if saved is not None and saved.size <= checkpoint.size:
        _judge_saved(report, rebuild, saved)
        if 0 < saved.size < checkpoint.size:
            await _check_served_proof(http, report, saved, checkpoint)
    if report.ok and state is not None:
        SavedCheckpoint(
            origin=checkpoint.origin,
            size=checkpoint.size,
            root=base64.b64encode(checkpoint.root).decode(),
            note=note,
            verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ).save(state)
        report.facts.append(f"this checkpoint is saved in {state} for the next check")
    return report


async def _served_entries(
    http: httpx.AsyncClient, size: int
) -> AsyncIterator[tuple[int, bytes, dict[str, Any]]]:
    start = 0
    while start < size:
        response = await http.get(
            "/v1/log/entries", params={"start": start, "end": min(size, start + _PAGE)}
        )
        response.raise_for_status()
        items = response.json()["items"]
        if not items:
            return
        for item in items:
            yield int(item["index"]), base64.b64decode(item["leaf"]), item["event"]
        start = int(items[-1]["index"]) + 1


async def _check_served_proof(
    http: httpx.AsyncClient, report: Report, saved: SavedCheckpoint, checkpoint: Checkpoint
) -> None:
    response = await http.get(
        "/v1/log/proofs/consistency", params={"first": saved.size, "second": checkpoint.size}
    )
    response.raise_for_status()
    proof = [base64.b64decode(h) for h in response.json()["hashes"]]
    if merkle.verify_consistency(
        saved.size, checkpoint.size, saved.root_bytes, checkpoint.root, proof
    ):
        report.facts.append("the log's own consistency proof between the two checkpoints holds")
    else:
        report.problems.append("the consistency proof the log serves does not verify")


def _judge(report: Report, rebuild: Rebuild, size: int, root: bytes, *, what: str) -> None:
    if rebuild.frontier.size < size:
        report.problems.append(
            f"{what} covers {size} entries but only {rebuild.frontier.size} could be read"
        )
    elif rebuild.roots.get(size) != root:
        report.problems.append(
            f"the root rebuilt from the first {size} entries differs from {what}'s: "
            "entries were changed, removed, reordered or inserted"
        )
    elif not rebuild.broken:
        report.facts.append(f"the root rebuilt from all {size} entries matches {what}")


def _judge_saved(report: Report, rebuild: Rebuild, saved: SavedCheckpoint) -> None:
    if rebuild.roots.get(saved.size) == saved.root_bytes:
        report.facts.append(
            f"the first {saved.size} entries are those of the checkpoint saved on "
            f"{saved.verified_at}: nothing before it was changed"
        )
    else:
        report.problems.append(
            f"the first {saved.size} entries no longer give the root of the checkpoint saved "
            f"on {saved.verified_at}: the log was rewritten"
        )


# From inside ---------------------------------------------------------------------


async def fsck(db: Database, verifier: Verifier) -> Report:
    """Check the service's own tables: every entry against its stored leaf hash, every
    tree node against its children, every signed checkpoint against the rebuilt tree."""
    report = Report()
    async with db.sessions() as session:
        size: int = (await session.execute(select(col(LogHead.size)))).scalar_one()
        count: int = (
            await session.execute(select(func.count()).select_from(LogEntry))
        ).scalar_one()
        query = select(CheckpointRow).order_by(col(CheckpointRow.size))
        signed = list((await session.execute(query)).scalars().all())
    report.facts.append(f"the log's head says {size} entries; its table holds {count}")
    if count != size:
        report.problems.append(f"the table holds {count} entries where the head says {size}")
    checkpoints = _open_checkpoints(report, signed, verifier)
    rebuild = Rebuild(report, {c.size for c in checkpoints})
    mismatched = 0
    after = -1
    while True:
        async with db.sessions() as session:
            page = await _entries_after(session, after)
            leaves = await _level(session, 0, page[0][0], page[-1][0] + 1) if page else {}
        for index, leaf in page:
            digest = rebuild.add(index, leaf)
            if index < size and leaves.get(index) != digest:
                mismatched += 1
                if mismatched <= 10:
                    report.problems.append(f"entry {index} does not hash to its stored leaf hash")
            if index >= size:
                report.problems.append(f"entry {index} lies beyond the log's size {size}")
        if len(page) < _PAGE:
            break
        after = page[-1][0]
    if mismatched > 10:
        report.problems.append(f"{mismatched} entries in all do not hash to their leaf hashes")
    for checkpoint in checkpoints:
        _judge(
            report, rebuild, checkpoint.size, checkpoint.root, what=f"checkpoint {checkpoint.size}"
        )
    await _check_nodes(db, report, size)
    return report


def _open_checkpoints(
    report: Report, rows: list[CheckpointRow], verifier: Verifier
) -> list[Checkpoint]:
    opened = []
    for row in rows:
        try:
            checkpoint = open_checkpoint(row.note, verifier)
        except NoteError as exc:
            report.problems.append(f"checkpoint {row.size} does not verify: {exc}")
            continue
        if (checkpoint.size, checkpoint.root) != (row.size, row.root):
            report.problems.append(f"checkpoint {row.size}'s columns differ from its signed note")
        opened.append(checkpoint)
    report.facts.append(f"{len(opened)} of {len(rows)} signed checkpoints verify with the key")
    return opened


async def _entries_after(session: AsyncSession, after: int) -> list[tuple[int, bytes]]:
    query = (
        select(col(LogEntry.idx), col(LogEntry.leaf))
        .where(col(LogEntry.idx) > after)
        .order_by(col(LogEntry.idx))
        .limit(_PAGE)
    )
    return [(i, leaf) for i, leaf in (await session.execute(query)).all()]


async def _level(session: AsyncSession, level: int, start: int, end: int) -> dict[int, bytes]:
    query = select(col(LogNode.idx), col(LogNode.hash)).where(
        col(LogNode.level) == level, col(LogNode.idx) >= start, col(LogNode.idx) < end
    )
    return {i: h for i, h in (await session.execute(query)).all()}


async def _check_nodes(db: Database, report: Report, size: int) -> None:
    """Every stored node above the leaves is the hash of its two children."""
    bad = 0
    level = 1
    while (width := size >> level) > 0:
        for start in range(0, width, _PAGE):
            end = min(width, start + _PAGE)
            async with db.sessions() as session:
                parents = await _level(session, level, start, end)
                children = await _level(session, level - 1, 2 * start, 2 * end)
            for i in range(start, end):
                left, right = children.get(2 * i), children.get(2 * i + 1)
                if left is None or right is None or parents.get(i) != merkle.node_hash(left, right):
                    bad += 1
                    if bad <= 10:
                        report.problems.append(
                            f"tree node {i} of level {level} is wrong or missing"
                        )
        level += 1
    if bad == 0:
        report.facts.append("every stored tree node is the hash of its two children")
