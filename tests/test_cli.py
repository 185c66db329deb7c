"""`icrs serve`, `icrs migrate`, `icrs admin bootstrap` and `icrs parked` as an operator
runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from icrs.cli import main
from icrs.processes import delete_namespace
from icrs_shared.bus import RabbitBus, parking
from icrs_shared.db import Database
from icrs_shared.events import Envelope
from icrs_shared.migrate import current_revision, head_revision
from icrs_shared.testing import eventually
from icrs_shared.testing.parking import park

from .test_up import _free_port


def icrs(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "icrs.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ICRS_", "OTEL_"))}
    env.update(extra)
    return env


async def test_serve_runs_one_service_on_rabbitmq_and_postgres(
    postgres_url: str, amqp_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    env = clean_env(
        ICRS_AMQP_URL=amqp_url,
        ICRS_AMQP_NAMESPACE=f"serve-{port}.",
        ICRS_REFERRAL_DATABASE_URL=postgres_url,
        ICRS_DATA_DIR=str(tmp_path),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "icrs.cli",
            "serve",
            "referral",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if r.status_code == 200:
                    body = r.json()
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert body == {"status": "ok", "service": "referral", "database": "ok", "bus": "ok"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    logs = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, logs
    db = Database(postgres_url)
    try:
        assert await current_revision(db) == head_revision("icrs_referral")
    finally:
        await db.dispose()
    await delete_namespace(amqp_url, env["ICRS_AMQP_NAMESPACE"], ["referral"])


def test_serve_refuses_to_start_without_a_broker(tmp_path: Path) -> None:
    result = icrs("serve", "intake", env=clean_env(ICRS_DATA_DIR=str(tmp_path)))
    assert result.returncode == 2
    assert "ICRS_AMQP_URL" in result.stderr


@pytest.mark.usefixtures("postgres_url")
def test_migrate_and_bootstrap(postgres_url: str, tmp_path: Path) -> None:
    env = clean_env(ICRS_PARTNERS_DATABASE_URL=postgres_url, ICRS_DATA_DIR=str(tmp_path))
    migrated = icrs("migrate", "partners", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "partners: migrated" in migrated.stdout

    first = icrs("admin", "bootstrap", env=env)
    assert first.returncode == 0, first.stderr
    creds = json.loads(first.stdout)
    stored = json.loads((tmp_path / "admin-client.json").read_text())
    assert stored == creds

    again = icrs("admin", "bootstrap", env=env)
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert creds["client_secret"] not in again.stdout + again.stderr

    rotated = icrs("admin", "bootstrap", "--rotate", env=env)
    assert rotated.returncode == 0
    assert json.loads(rotated.stdout)["client_id"] != creds["client_id"]


async def test_parked_lists_and_puts_back_what_a_service_gave_up_on(
    amqp_url: str, bus_namespace: str, tmp_path: Path
) -> None:
    env = clean_env(
        ICRS_AMQP_URL=amqp_url, ICRS_AMQP_NAMESPACE=bus_namespace, ICRS_DATA_DIR=str(tmp_path)
    )
    bus = RabbitBus(amqp_url, namespace=bus_namespace, delivery_limit=1)
    await bus.start()
    broken = True
    handled: list[str] = []

    async def handler(env: Envelope) -> None:
        if broken:
            raise RuntimeError("a bug, fixed later")
        handled.append(str(env.id))

    try:
        await bus.subscribe("intake", "probe", ["case.*"], handler)
        poison = Envelope(source="/icrs/test", type="icrs.case.updated", subject="s")
        await bus.publish([poison])

        async def parked() -> bool:
            return len(await bus.parked("intake")) == 1

        await eventually(parked, within=20)
        listed = await asyncio.to_thread(icrs, "parked", "list", env=env)
        assert listed.returncode == 0, listed.stderr
        [line] = listed.stdout.splitlines()
        assert line.split("\t")[:6] == [
            "intake", "probe", "icrs.case.updated", str(poison.id), "delivery_limit", "2"
        ]  # fmt: skip
        broken = False
        unknown = await asyncio.to_thread(
            icrs, "parked", "replay", "intake", "--event", str(uuid.uuid4()), env=env
        )
        assert unknown.returncode == 1
        assert "not put back" in unknown.stderr
        assert handled == []
        back = await asyncio.to_thread(
            icrs, "parked", "replay", "intake", "--event", str(poison.id), env=env
        )
        assert back.returncode == 0, back.stderr
        assert str(poison.id) in back.stdout
        await eventually(lambda: handled == [str(poison.id)])
        again = await asyncio.to_thread(icrs, "parked", "list", "intake", env=env)
        assert (again.returncode, again.stdout) == (0, "")
    finally:
        await bus.delete_topology()
        await bus.close()


def test_parked_needs_the_broker_it_is_given() -> None:
    away = clean_env(ICRS_AMQP_URL="amqp://guest:guest@127.0.0.1:1/")
    result = icrs("parked", "replay", "audit", "--all", env=away)
    assert result.returncode == 2
    assert "did not answer" in result.stderr


def test_parked_in_the_one_process_default_are_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in [v for v in os.environ if v.startswith(("ICRS_", "OTEL_"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("ICRS_DATA_DIR", str(tmp_path))
    assessed = Envelope(source="/icrs/intake", type="icrs.needs.assessed", subject="n-1")
    asyncio.run(park(tmp_path / "parked", "referral", "routing", assessed))

    def parked(*args: str) -> tuple[int, str, str]:
        code = main(["parked", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, listed, _ = parked("list")
    assert code == 0
    [row] = listed.splitlines()
    assert row.split("\t")[:6] == [
        "referral",
        "routing",
        "icrs.needs.assessed",
        str(assessed.id),
        "delivery_limit",
        "1",
    ]
    code, _, said = parked("replay", "referral", "--event", str(uuid.uuid4()))
    assert code == 1
    assert "not put back" in said
    code, back, said = parked("replay", "referral", "--event", str(assessed.id))
    assert code == 0, said
    assert back.startswith(f"put back: referral\trouting\ticrs.needs.assessed\t{assessed.id}")
    # Waiting for the platform to take it in: listed as put back, no longer as parked.
    code, listed, _ = parked("list", "referral")
    assert [row.split("\t")[3:5] for row in listed.splitlines()] == [[str(assessed.id), "put_back"]]
    assert parking.parked(tmp_path / "parked", "referral") == []


def test_the_command_loads_no_service_until_one_is_asked_for() -> None:
    # Operator commands (`icrs parked`, `icrs settings`) start in a moment: the four web
    # applications and the web server are imported only by the commands that run them.
    probe = (
        "import sys, icrs.cli\n"
        "from icrs.services import SERVICES\n"
        "loaded = lambda: sorted(m for m in HEAVY if m in sys.modules)\n"
        "HEAVY = ['fastapi', 'uvicorn'] + [f'icrs_{s}.app' for s in SERVICES]\n"
        "before = loaded()\n"
        "SERVICES['audit'].settings\n"
        "settings_only = loaded()\n"
        "SERVICES['audit'].prefixes\n"
        "print(before, settings_only, loaded())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[] [] ['fastapi', 'icrs_audit.app']"
