"""The log is append-only in the database, and a change made behind the service's back
(with its triggers bypassed) is found by `fsck` and by `verify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import rfc8785
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from icrs_audit.note import Verifier
from icrs_audit.verify import fsck, verify_remote

if TYPE_CHECKING:
    from conftest import Audit

SIZE = 20


@pytest.fixture
async def logged(audit: Audit) -> Audit:
    await audit.publish(audit.events(SIZE))
    await audit.wait_for_checkpoint(SIZE)
    return audit


async def verifier(audit: Audit) -> Verifier:
    return Verifier((await audit.get("/v1/log/key")).json()["verifier"])


async def remote(audit: Audit, state: Path | None = None) -> tuple[bool, str]:
    transport = httpx.ASGITransport(app=audit.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://audit", headers=audit.auditor
    ) as http:
        report = await verify_remote(http, await verifier(audit), state)
    return report.ok, report.text()


async def behind_its_back(audit: Audit, *statements: str) -> None:
    """Run SQL with the log's triggers off, as someone with the database's superuser could."""
    async with audit.app.state.runtime.db.transaction() as session:
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            await session.execute(text(statement))


async def forged_leaf(audit: Audit, index: int) -> str:
    """SQL bytea literal of entry `index`'s leaf with its actor changed."""
    async with audit.app.state.runtime.db.sessions() as session:
        leaf = (
            await session.execute(text(f"SELECT leaf FROM log_entries WHERE idx = {index}"))
        ).scalar_one()
    event = json.loads(leaf)
    event["actor"] = "someone-else"
    return "'\\x" + rfc8785.dumps(event).hex() + "'::bytea"


async def test_an_untouched_log_checks_out(logged: Audit, tmp_path: Path) -> None:
    report = await fsck(logged.app.state.runtime.db, await verifier(logged))
    assert report.ok, report.text()
    assert "every stored tree node is the hash of its two children" in report.text()
    state = tmp_path / "audit-state.json"
    ok, said = await remote(logged, state)
    assert ok, said
    assert f"the root rebuilt from all {SIZE} entries matches the checkpoint" in said
    assert json.loads(state.read_text())["size"] == SIZE

    await logged.publish(logged.events(7))
    await logged.wait_for_checkpoint(SIZE + 7)
    ok, said = await remote(logged, state)
    assert ok, said
    assert f"the first {SIZE} entries are those of the checkpoint saved on" in said
    assert "consistency proof between the two checkpoints holds" in said
    assert json.loads(state.read_text())["size"] == SIZE + 7


@pytest.mark.parametrize("statement", ["UPDATE {t} SET {c} = {c}", "DELETE FROM {t}"])
async def test_the_service_cannot_update_or_delete_the_log(logged: Audit, statement: str) -> None:
    columns = {"log_entries": "leaf", "log_nodes": "hash", "checkpoints": "note"}
    for table, column in columns.items():
        with pytest.raises(DBAPIError, match="append-only"):
            async with logged.app.state.runtime.db.transaction() as session:
                await session.execute(text(statement.format(t=table, c=column)))
    assert await logged.size() == SIZE


async def tamper(audit: Audit, how: str) -> None:
    if how == "change":
        forged = await forged_leaf(audit, 7)
        await behind_its_back(audit, f"UPDATE log_entries SET leaf = {forged} WHERE idx = 7")
    elif how == "delete":
        await behind_its_back(audit, "DELETE FROM log_entries WHERE idx = 7")
    elif how == "reorder":
        await behind_its_back(
            audit,
            "UPDATE log_entries SET idx = -1 WHERE idx = 3",
            "UPDATE log_entries SET idx = 3 WHERE idx = 4",
            "UPDATE log_entries SET idx = 4 WHERE idx = -1",
        )
    elif how == "insert":
        forged = await forged_leaf(audit, 5)
        await behind_its_back(
            audit,
            "UPDATE log_entries SET idx = idx + 1000000 WHERE idx >= 5",
            "UPDATE log_entries SET idx = idx - 999999 WHERE idx >= 1000000",
            "INSERT INTO log_entries (idx, event_id, leaf, type, time, appended_at) "
            f"VALUES (5, gen_random_uuid(), {forged}, 'icrs.referral.created', now(), now())",
        )
    elif how == "tree node":
        await behind_its_back(
            audit, "UPDATE log_nodes SET hash = sha256(hash) WHERE level = 1 AND idx = 2"
        )


@pytest.mark.parametrize("how", ["change", "delete", "reorder", "insert", "tree node"])
async def test_tampering_is_found(logged: Audit, how: str) -> None:
    await tamper(logged, how)
    report = await fsck(logged.app.state.runtime.db, await verifier(logged))
    assert not report.ok
    assert "does NOT check out" in report.text()
    if how != "tree node":  # the entries themselves are intact there
        ok, said = await remote(logged)
        assert not ok, said
        assert "PROBLEM" in said


async def test_a_rewritten_log_fails_against_the_saved_checkpoint(
    logged: Audit, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    assert (await remote(logged, state))[0]
    await tamper(logged, "change")
    ok, said = await remote(logged, state)
    assert not ok
    assert f"the first {SIZE} entries no longer give the root of the checkpoint saved" in said
    assert json.loads(state.read_text())["size"] == SIZE  # a failed check saves nothing


async def test_the_service_refuses_to_sign_a_tree_that_does_not_extend_its_last_checkpoint(
    logged: Audit,
) -> None:
    from icrs_audit.checkpoints import InconsistentLog, sign_if_grown
    from icrs_audit.state import audit_log

    # The subtree of entries 16..19: in the last checkpoint's tree and in the next one's.
    await behind_its_back(
        logged, "UPDATE log_nodes SET hash = sha256(hash) WHERE level = 2 AND idx = 4"
    )
    await logged.publish(logged.events(3))
    await logged.wait_for_size(SIZE + 3)
    runtime = logged.app.state.runtime
    signer = audit_log(runtime).signer
    with pytest.raises(InconsistentLog):
        await sign_if_grown(runtime.db, signer, logged.settings.origin)
    note = (await logged.get("/v1/log/checkpoint")).text
    assert note.split("\n")[1] == str(SIZE)
