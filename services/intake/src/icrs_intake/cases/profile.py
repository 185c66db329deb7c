"""A case's sealed profile, and the ages and age bands computed from it."""

from __future__ import annotations

import uuid
from datetime import date

from ..crypto import Keyring, seal_json, unseal_json
from ..models import CaseKey
from .schemas import Person, Profile

#: The purpose the profile is sealed under (bound into its ciphertext).
PURPOSE = "profile"
_BANDS = (
    (12, "0-11"),
    (15, "12-14"),
    (18, "15-17"),
    (25, "18-24"),
    (35, "25-34"),
    (50, "35-49"),
    (65, "50-64"),
)


def age_on(person: Person, day: date) -> int:
    if person.date_of_birth is None:
        return person.estimated_age or 0
    born = person.date_of_birth
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def age_band(age: int) -> str:
    for limit, band in _BANDS:
        if age < limit:
            return band
    return "65+"


def seal(data_key: bytes, case_id: uuid.UUID, profile: Profile) -> bytes:
    return seal_json(data_key, case_id, PURPOSE, profile.model_dump(mode="json"))


def unseal(data_key: bytes, case_id: uuid.UUID, blob: bytes) -> Profile:
    return Profile.model_validate(unseal_json(data_key, case_id, PURPOSE, blob))


def unwrap(keyring: Keyring, row: CaseKey) -> bytes:
    return keyring.unwrap(row.case_id, row.key_version, row.wrapped)
