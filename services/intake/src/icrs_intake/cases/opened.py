"""A case opened for a request: the row, its data key and its profile."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import Case
from .schemas import Profile


@dataclass
class Opened:
    """A case with its data key and profile, for as long as a request needs them."""

    case: Case
    data_key: bytes | None
    profile: Profile | None
