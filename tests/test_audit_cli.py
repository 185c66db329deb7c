"""`icrs audit verify` and `icrs audit fsck` as an auditor and an operator run them,
on the one-process platform (SQLite, where the log is append-only by trigger too)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from .test_cli import clean_env, icrs
from .test_up import _free_port, running_platform, wait_ready


def token(base: str, client_id: str, secret: str) -> str:
    r = httpx.post(
        f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def auditor_client(base: str, admin_token: str) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    org = httpx.post(
        f"{base}/v1/organizations",
        json={"name": "Programme audit", "kind": "auditor", "country": "SO"},
        headers=headers,
    ).json()
    assert httpx.post(f"{base}/v1/organizations/{org['id']}/verify", headers=headers).is_success
    client = httpx.post(
        f"{base}/v1/organizations/{org['id']}/clients",
        json={"name": "verifier", "scopes": ["audit:read"]},
        headers=headers,
    ).json()
    return client["client_id"], client["client_secret"]


def test_verify_and_fsck_find_an_intact_log_and_a_changed_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    state = tmp_path / "audit-state.json"
    with running_platform(data_dir, port):
        wait_ready(port)
        admin = json.loads((data_dir / "admin-client.json").read_text())
        client_id, secret = auditor_client(
            base, token(base, admin["client_id"], admin["client_secret"])
        )
        auditor = {"Authorization": f"Bearer {token(base, client_id, secret)}"}
        key = httpx.get(f"{base}/v1/log/key", headers=auditor).json()["verifier"]
        (tmp_path / "audit.key").write_text(key + "\n")

        def verify() -> tuple[int, str]:
            env = clean_env(ICRS_CLIENT_ID=client_id, ICRS_CLIENT_SECRET=secret)
            args = ("audit", "verify", "--url", base, "--key", f"@{tmp_path / 'audit.key'}")
            result = icrs(*args, "--state", str(state), env=env)
            return result.returncode, result.stdout + result.stderr

        def wait_signed(size: int) -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                note = httpx.get(f"{base}/v1/log/checkpoint", headers=auditor).text
                if int(note.split("\n")[1]) >= size:
                    return
                time.sleep(0.2)
            raise AssertionError(f"no checkpoint of {size} entries within 30 s")

        # Registering, verifying and issuing were logged: 3 events at least.
        wait_signed(3)
        code, said = verify()
        assert code == 0, said
        assert "The log checks out." in said
        first = json.loads(state.read_text())["size"]

        # More events, a new checkpoint: the next check proves it extends the saved one.
        auditor_client(base, token(base, admin["client_id"], admin["client_secret"]))
        wait_signed(first + 1)
        code, said = verify()
        assert code == 0, said
        assert f"the first {first} entries are those of the checkpoint saved on" in said

        no_key = icrs("audit", "verify", "--url", base, "--key", key, env=clean_env())
        assert no_key.returncode == 2
        assert "audit:read" in no_key.stderr

    fsck_env = clean_env(ICRS_DATA_DIR=str(data_dir))
    result = icrs("audit", "fsck", env=fsck_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The log checks out." in result.stdout

    with sqlite3.connect(data_dir / "audit.db") as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE log_entries SET actor = 'x' WHERE idx = 0")
        # Behind the service's back: without the trigger.
        conn.execute("DROP TRIGGER log_entries_no_update")
        conn.execute("UPDATE log_entries SET leaf = CAST('{}' AS BLOB) WHERE idx = 1")
    result = icrs("audit", "fsck", env=fsck_env)
    assert result.returncode == 1
    assert "entry 1 does not hash to its stored leaf hash" in result.stdout

    with running_platform(data_dir, port):
        wait_ready(port)
        code, said = verify()
    assert code == 1
    assert "PROBLEM" in said
