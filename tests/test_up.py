"""`icrs up`: the whole platform in one process, as `make up` runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from icrs_audit.state import CONSUMER as AUDIT_LOG
from icrs_shared.bus import parking
from icrs_shared.events import Envelope
from icrs_shared.events.catalog import CaseErased
from icrs_shared.testing.parking import park


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_platform(data_dir: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICRS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "icrs.cli", "up", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(port: int, within: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if r.status_code == 200:
                body: dict[str, object] = r.json()
                return body
            last = r.text
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"not ready within {within}s: {last}")


def admin_clients(data_dir: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(data_dir / "partners.db") as conn:
        rows = conn.execute("SELECT client_id, revoked_at FROM clients").fetchall()
    return [(str(a), b) for a, b in rows]


def test_up_serves_all_four_a_restart_keeps_data_and_admin_and_takes_in_what_was_put_back(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    port = _free_port()
    with running_platform(data_dir, port) as proc:
        ready = wait_ready(port)
        assert ready["status"] == "ok"
        services = ready["services"]
        assert isinstance(services, dict)
        assert set(services) == {"partners", "intake", "referral", "audit"}
        assert all(s["status"] == "ok" for s in services.values())
        doc = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        assert doc["info"]["title"] == "ICRS"
        missing = httpx.get(f"http://127.0.0.1:{port}/v1/nowhere")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
    out = proc.stdout.read() if proc.stdout else ""

    admin_file = data_dir / "admin-client.json"
    assert oct(admin_file.stat().st_mode & 0o777) == "0o600"
    creds = json.loads(admin_file.read_text())
    assert set(creds) == {"client_id", "client_secret"}
    assert f"http://127.0.0.1:{port}" in out
    assert creds["client_id"] in out
    assert creds["client_secret"] in out
    for name in ("partners", "intake", "referral", "audit"):
        assert (data_dir / f"{name}.db").exists()
    first_clients = admin_clients(data_dir)
    assert first_clients == [(creds["client_id"], None)]

    # A message the audit log parked in the first run, put back with `icrs parked replay`
    # while the second runs: it lands in the log.
    erased = Envelope(
        source="/icrs/intake",
        type="icrs.case.erased",
        data=CaseErased(case_id=uuid.uuid4(), organization_id=uuid.uuid4()).model_dump(mode="json"),
    )
    asyncio.run(park(data_dir / "parked", "audit", AUDIT_LOG, erased))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICRS_")}
    env["ICRS_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "icrs.cli", "parked", "replay", "audit", "--all"]

    def logged() -> list[str]:
        with sqlite3.connect(data_dir / "audit.db") as conn:
            rows = conn.execute("SELECT event_id FROM log_entries").fetchall()
        return [str(uuid.UUID(str(r[0]))) for r in rows]

    with running_platform(data_dir, port):
        assert wait_ready(port)["status"] == "ok"
        assert str(erased.id) not in logged()
        replay = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr
        deadline = time.monotonic() + 10
        while str(erased.id) not in logged() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert logged().count(str(erased.id)) == 1
    assert json.loads(admin_file.read_text()) == creds
    assert admin_clients(data_dir) == first_clients
    assert parking.parked(data_dir / "parked", "audit") == []
    assert parking.waiting(data_dir / "parked", "audit") == []
