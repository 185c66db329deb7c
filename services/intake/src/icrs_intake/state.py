"""What the intake service holds while it runs: its keyring."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from icrs_shared.auth import organization_of
from icrs_shared.runtime import Runtime

from .crypto import Keyring, load_keyring
from .settings import IntakeSettings

_EXTRA = "keyring"


async def start_keyring(runtime: Runtime) -> None:
    settings = runtime.settings
    if not isinstance(settings, IntakeSettings):
        raise TypeError("the intake service runs with IntakeSettings")
    runtime.extras[_EXTRA] = load_keyring(settings)


def keyring_of(runtime: Runtime) -> Keyring:
    keyring = runtime.extras.get(_EXTRA)
    if not isinstance(keyring, Keyring):
        raise RuntimeError("the intake keyring has not been loaded")
    return keyring


async def get_keyring(request: Request) -> Keyring:
    return keyring_of(request.app.state.runtime)


async def get_settings(request: Request) -> IntakeSettings:
    settings = request.app.state.runtime.settings
    assert isinstance(settings, IntakeSettings)
    return settings


KeyringDep = Annotated[Keyring, Depends(get_keyring)]
SettingsDep = Annotated[IntakeSettings, Depends(get_settings)]

__all__ = ["KeyringDep", "SettingsDep", "organization_of"]
