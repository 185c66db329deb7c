"""The audit service's Merkle log at scale, beside pymerkle on the same leaves.

The store (icrs_audit.log on a throwaway PostgreSQL database) takes the entries in batches
of the service's size, one transaction each, carrying the frontier from batch to batch as
the appender does. Inclusion and consistency proofs are then timed at several tree sizes
for random indices and random (first, second) pairs, and every one is verified against
the store's root. pymerkle (SqliteTree on disk, InmemoryTree) gets the same leaves in
the same batches and the same proof requests; its roots and proofs are checked against
ours, which holds only if it hashes as RFC 9162 does (0x00 leaf, 0x01 node, SHA-256).

    uv run python bench/audit_log.py [--entries 1000000] [--out bench/results/audit_log.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pymerkle
from sqlalchemy import text

from icrs_audit import log as store
from icrs_audit import merkle
from icrs_shared.db import Database
from icrs_shared.events import Envelope
from icrs_shared.events.catalog import ReferralEvent
from icrs_shared.migrate import upgrade
from icrs_shared.testing.databases import create_database, drop_database

PG = os.environ.get(
    "ICRS_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
SIZES = (1_000, 10_000, 100_000, 1_000_000)

Pair = tuple[int, int]
Samples = dict[int, tuple[list[int], list[Pair]]]


def envelope(i: int) -> Envelope:
    data = ReferralEvent(
        referral_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        need_category="housing",
        requester_organization_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        service_id=uuid.uuid4(),
        status="created",
    )
    return Envelope(
        source="/icrs/referral",
        type="icrs.referral.created",
        subject=str(data.referral_id),
        actor=f"user-{i % 97}",
        data=data.model_dump(mode="json"),
    )


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rates(n: int, segment: int, marks: list[tuple[float, float]], wall: float) -> dict[str, Any]:
    """Entries per second overall (time in the appends alone) and per segment; `marks`
    holds (seconds so far, one-minute load average) at each segment's end, the load
    showing whether others' work shared the machine."""
    segments, before = [], 0.0
    for k, (spent, load) in enumerate(marks):
        count = min(segment, n - k * segment)
        per_s = round(count / (spent - before))
        segments.append({"upto": k * segment + count, "per_s": per_s, "load": load})
        before = spent
    return {
        "seconds": round(marks[-1][0], 2),
        "per_s": round(n / marks[-1][0]),
        "wall_seconds": round(wall, 2),
        "segments": segments,
    }


def timings(ms: list[float]) -> dict[str, float]:
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18]
    return {
        "samples": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(p95, 3),
        "first_ms": round(ms[0], 3),
    }


def node_counts(counts: list[int]) -> dict[str, float]:
    return {"nodes_max": max(counts), "nodes_mean": round(statistics.fmean(counts), 2)}


def draw(rng: random.Random, sizes: list[int], k: int) -> Samples:
    """For each size s: k leaf indices in [0, s) and k pairs 1 <= first < second <= s."""

    def pair(s: int) -> Pair:
        first, second = sorted(rng.sample(range(1, s + 1), 2))
        return first, second

    return {s: ([rng.randrange(s) for _ in range(k)], [pair(s) for _ in range(k)]) for s in sizes}


async def load(
    db: Database, n: int, batch: int, segment: int
) -> tuple[list[bytes], dict[str, Any]]:
    """Append n envelopes; returns their leaves (computed apart, not timed) and the rates."""
    leaves: list[bytes] = []
    frontier: merkle.Frontier | None = None
    spent, wall = 0.0, time.perf_counter()
    marks: list[tuple[float, float]] = []
    for start in range(0, n, batch):
        envelopes = [envelope(start + i) for i in range(min(batch, n - start))]
        leaves.extend(store.leaf_data(e) for e in envelopes)
        began = time.perf_counter()
        async with db.transaction() as session:
            indexes, frontier = await store.append(session, envelopes, frontier)
        spent += time.perf_counter() - began
        if indexes != list(range(start, start + len(envelopes))):
            raise AssertionError(f"batch at {start} got indexes {indexes[:3]}...")
        if len(leaves) % segment == 0 or len(leaves) == n:
            marks.append((spent, round(os.getloadavg()[0], 2)))
            say(f"  icrs_audit: {len(leaves):>9,} appended, {len(leaves) / spent:,.0f}/s")
    return leaves, rates(n, segment, marks, time.perf_counter() - wall)


async def store_proofs(
    db: Database, leaves: list[bytes], samples: Samples
) -> tuple[dict[str, Any], dict[int, bytes], dict[tuple[str, int, int], list[bytes]]]:
    """Time and verify the store's proofs; returns the figures, roots and proofs."""
    roots: dict[int, bytes] = {}
    proofs: dict[tuple[str, int, int], list[bytes]] = {}
    out: dict[str, Any] = {}
    async with db.sessions() as session:

        async def root(size: int) -> bytes:
            if size not in roots:
                roots[size] = await store.root(session, size)
            return roots[size]

        for s, (indices, pairs) in samples.items():
            ms, nodes = [], []
            for i in indices:
                began = time.perf_counter()
                leaf, path = await store.inclusion_proof(session, i, s)
                ms.append((time.perf_counter() - began) * 1000)
                nodes.append(len(merkle.plan_nodes(merkle.inclusion_plan(i, s))))
                if leaf != merkle.leaf_hash(leaves[i]) or not merkle.verify_inclusion(
                    leaf, i, s, path, await root(s)
                ):
                    raise AssertionError(f"bad inclusion proof for {i} in {s}")
                proofs["inclusion", i, s] = path
            inclusion = {**timings(ms), **node_counts(nodes)}
            ms, nodes = [], []
            for a, b in pairs:
                began = time.perf_counter()
                path = await store.consistency_proof(session, a, b)
                ms.append((time.perf_counter() - began) * 1000)
                nodes.append(len(merkle.plan_nodes(merkle.consistency_plan(a, b))))
                if not merkle.verify_consistency(a, b, await root(a), await root(b), path):
                    raise AssertionError(f"bad consistency proof from {a} to {b}")
                proofs["consistency", a, b] = path
            consistency = {**timings(ms), **node_counts(nodes)}
            out[str(s)] = {"inclusion": inclusion, "consistency": consistency}
            say(f"  icrs_audit proofs at {s:,}: {out[str(s)]}")
    return out, roots, proofs


def pymerkle_run(
    name: str,
    make: Callable[[], pymerkle.BaseMerkleTree],
    leaves: list[bytes],
    batch: int,
    segment: int,
    samples: Samples,
    roots: dict[int, bytes],
    ours: dict[tuple[str, int, int], list[bytes]],
) -> dict[str, Any]:
    """The same appends and proof requests on a pymerkle tree, checked against ours."""
    tree, n = make(), len(leaves)
    spent, wall = 0.0, time.perf_counter()
    marks: list[tuple[float, float]] = []
    for start in range(0, n, batch):
        began = time.perf_counter()
        tree.append_entries(leaves[start : start + batch])
        spent += time.perf_counter() - began
        done = min(start + batch, n)
        if done % segment == 0 or done == n:
            marks.append((spent, round(os.getloadavg()[0], 2)))
            say(f"  {name}: {done:>9,} appended, {done / spent:,.0f}/s")
    append = rates(n, segment, marks, time.perf_counter() - wall)
    out: dict[str, Any] = {}
    for s, (indices, pairs) in samples.items():
        ms = []
        for i in indices:
            began = time.perf_counter()
            proof = tree.prove_inclusion(i + 1, s)  # pymerkle counts leaves from one
            ms.append((time.perf_counter() - began) * 1000)
            pymerkle.verify_inclusion(merkle.leaf_hash(leaves[i]), roots[s], proof, i + 1, s)
            if proof.path[1:] != ours["inclusion", i, s]:
                raise AssertionError(f"{name}: inclusion path for {i} in {s} differs from ours")
        inclusion = timings(ms)
        ms = []
        for a, b in pairs:
            began = time.perf_counter()
            proof = tree.prove_consistency(a, b)
            ms.append((time.perf_counter() - began) * 1000)
            pymerkle.verify_consistency(roots[a], roots[b], proof, a, b)
        out[str(s)] = {"inclusion": inclusion, "consistency": timings(ms)}
        say(f"  {name} proofs at {s:,}: {out[str(s)]}")
    same_roots = all(tree.get_root(s) == roots[s] for s in samples)
    if not same_roots:
        raise AssertionError(f"{name}: roots differ from ours")
    result = {"append": append, "proofs": out, "roots_equal_ours": same_roots}
    if isinstance(tree, pymerkle.SqliteTree):
        result["file_bytes"] = os.path.getsize(tree.dbfile)
        tree.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500, help="the service's default")
    parser.add_argument("--proofs", type=int, default=1000, help="samples per size and kind")
    parser.add_argument("--pymerkle-proofs", type=int, default=1000, help="first k of those")
    parser.add_argument("--seed", type=int, default=9162)
    parser.add_argument("--out", type=Path, default=Path("bench/results/audit_log.json"))
    args = parser.parse_args()
    n, started = args.entries, time.perf_counter()
    segment = max(n // 10, args.batch)
    sizes = sorted({s for s in SIZES if s <= n} | {n})
    samples = draw(random.Random(args.seed), sizes, args.proofs)

    url = await create_database(PG, prefix="icrs_bench")
    db = Database(url)
    try:
        await upgrade(db, "icrs_audit")
        say(f"icrs_audit: appending {n:,} entries in batches of {args.batch}")
        leaves, append = await load(db, n, args.batch, segment)
        proofs, roots, ours = await store_proofs(db, leaves, samples)
        if roots[n] != merkle.root_from_leaf_hashes(map(merkle.leaf_hash, leaves)):
            raise AssertionError("the stored root differs from the leaves' own")
        async with db.sessions() as session:
            postgres = (await session.execute(text("SELECT version()"))).scalar_one()
            settings = {
                name: (await session.execute(text(f"SHOW {name}"))).scalar_one()
                for name in ("fsync", "synchronous_commit", "shared_buffers")
            }
            tables = {
                name: (
                    await session.execute(text(f"SELECT pg_total_relation_size('{name}')"))
                ).scalar_one()
                for name in ("log_entries", "log_nodes")
            }
            # Blocks each index missed in shared_buffers (read in) and found there.
            blocks = await session.execute(
                text(
                    "SELECT indexrelname, idx_blks_read, idx_blks_hit FROM pg_statio_user_indexes"
                    " WHERE relname IN ('log_entries', 'log_nodes') ORDER BY indexrelname"
                )
            )
            index_blocks = {name: {"read": r, "hit": h} for name, r, h in blocks.all()}
    finally:
        await db.dispose()
        await drop_database(url)

    k = args.pymerkle_proofs
    theirs = {s: (indices[:k], pairs[:k]) for s, (indices, pairs) in samples.items()}
    with tempfile.TemporaryDirectory() as tmp:
        makers: dict[str, Callable[[], pymerkle.BaseMerkleTree]] = {
            "SqliteTree": lambda: pymerkle.SqliteTree(os.path.join(tmp, "merkle.db")),
            "InmemoryTree": pymerkle.InmemoryTree,
        }
        backends = {
            name: pymerkle_run(name, make, leaves, args.batch, segment, theirs, roots, ours)
            for name, make in makers.items()
        }

    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgres": postgres,
            "postgres_settings": settings,
            "pymerkle": version("pymerkle"),
        },
        "entries": n,
        "batch": args.batch,
        "seed": args.seed,
        "hashing": "RFC 9162 (SHA-256, 0x00 leaf and 0x01 node prefixes) on both sides: "
        "pymerkle's defaults (security on) give our roots and inclusion paths exactly",
        "icrs_audit": {
            "append": append,
            "table_bytes": tables,
            "index_blocks": index_blocks,
            "proofs": proofs,
        },
        "pymerkle": backends,
        "run_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def table(result: dict[str, Any]) -> str:
    rows = [("", "append/s", "size", "incl med", "incl p95", "cons med", "cons p95", "nodes")]
    sides = [("icrs_audit", result["icrs_audit"])]
    sides += [(f"pymerkle {k}", v) for k, v in result["pymerkle"].items()]
    for name, side in sides:
        for s, p in side["proofs"].items():
            inc, con = p["inclusion"], p["consistency"]
            rows.append(
                (
                    name,
                    f"{side['append']['per_s']:,}",
                    f"{int(s):,}",
                    f"{inc['median_ms']:.3f}",
                    f"{inc['p95_ms']:.3f}",
                    f"{con['median_ms']:.3f}",
                    f"{con['p95_ms']:.3f}",
                    f"{inc['nodes_max']}/{con['nodes_max']}" if "nodes_max" in inc else "",
                )
            )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([*lines, f"(ms per proof; run took {result['run_seconds']} s)"])


if __name__ == "__main__":
    asyncio.run(main())
