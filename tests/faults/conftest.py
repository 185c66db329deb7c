"""Fixtures of the fault tests: the platform runs as separate `icrs serve` processes
(`icrs.processes`), cases stream in (`icrs.load`) while a fault is made, and what the
platform did with them is counted afterwards (`icrs.tally`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def service_env() -> dict[str, str]:
    """What the services' processes run with. They keep their compiled bytecode outside
    the source tree, so that each start and restart (there are many) does not compile
    every module again; the audit log signs a checkpoint soon after it grows, so that the
    checks afterwards need not wait long for one that covers every event."""
    cache = Path(tempfile.gettempdir()) / f"icrs-pycache-{os.getuid()}"
    cache.mkdir(exist_ok=True)
    return {
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPYCACHEPREFIX": str(cache),
        "ICRS_AUDIT_CHECKPOINT_INTERVAL": "0.5",
    }
