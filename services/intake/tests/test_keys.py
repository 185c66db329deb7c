"""The intake keys: the key file, master key rotation by re-wrapping data keys."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from icrs.cli import main
from icrs_intake.cases import service as cases
from icrs_intake.crypto import KEY_FILE, Keyring, KeyringError, load_keyring
from icrs_intake.models import Case, CaseKey
from icrs_intake.rekey import rewrap
from icrs_intake.settings import IntakeSettings

if TYPE_CHECKING:
    from conftest import Intake


def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_the_key_file_is_made_once_and_private(tmp_path: Path) -> None:
    settings = IntakeSettings(data_dir=tmp_path)
    first = load_keyring(settings)
    path = tmp_path / KEY_FILE
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = load_keyring(settings)
    assert again == first
    assert first.current_version == 1


def test_configured_keys_are_checked(tmp_path: Path) -> None:
    secret = key()
    for bad in ('{"1": "c2hvcnQ="}', "not json", "{}", json.dumps({"zero": secret})):
        settings = IntakeSettings(data_dir=tmp_path, intake_master_keys=bad, intake_index_key=key())
        with pytest.raises(KeyringError) as caught:
            load_keyring(settings)
        assert "ICRS_INTAKE_MASTER_KEYS" in str(caught.value)
        assert secret not in str(caught.value)


def test_add_master_key_adds_a_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICRS_DATA_DIR", str(tmp_path))
    before = load_keyring(IntakeSettings(data_dir=tmp_path))
    assert main(["intake", "add-master-key"]) == 0
    after = load_keyring(IntakeSettings(data_dir=tmp_path))
    assert after.current_version == 2
    assert after.master_keys[1] == before.master_keys[1]
    assert after.index_key == before.index_key
    assert oct((tmp_path / KEY_FILE).stat().st_mode & 0o777) == "0o600"
    assert set(json.loads((tmp_path / KEY_FILE).read_text())["master_keys"]) == {"1", "2"}


async def test_rewrap_moves_every_data_key_to_the_newest_master_key(
    intake: Intake, intake_settings: IntakeSettings
) -> None:
    ids = [
        (await intake.register(person={"given_name": f"Name{i}", "documents": []}, area=f"SO{i}1"))[
            "id"
        ]
        for i in range(3)
    ]
    old = load_keyring(intake_settings)
    new_key = key()
    masters = {str(v): base64.b64encode(k).decode() for v, k in old.master_keys.items()}
    index = base64.b64encode(old.index_key).decode()
    base = intake_settings.model_dump(exclude={"intake_master_keys", "intake_index_key"})

    def keyring(masters: dict[str, str]) -> Keyring:
        settings = IntakeSettings(
            **base, intake_master_keys=json.dumps(masters), intake_index_key=index
        )
        return load_keyring(settings)

    both = keyring({**masters, "2": new_key})
    only_new = keyring({"2": new_key})
    db = intake.app.state.runtime.db
    async with db.sessions() as session:
        case = await session.get(Case, ids[0])
        assert case is not None
        with pytest.raises(KeyringError):
            await cases.open_case(session, only_new, case)

    assert await rewrap(db, both, batch=2) == 3
    assert await rewrap(db, both) == 0
    async with db.sessions() as session:
        versions = (await session.execute(select(CaseKey.key_version))).scalars().all()
        assert set(versions) == {2}
        for case_id in ids:
            case = await session.get(Case, case_id)
            assert case is not None
            opened = await cases.open_case(session, only_new, case)
            assert opened.profile is not None
            assert opened.profile.person.given_name.startswith("Name")
