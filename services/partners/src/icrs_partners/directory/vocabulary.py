"""The closed vocabularies of the directory (contract §4 and §5)."""

from __future__ import annotations

from typing import Literal, get_args

Category = Literal[
    "health",
    "psychosocial",
    "legal",
    "housing",
    "vocational_training",
    "education",
    "livelihoods",
    "documentation",
    "family_tracing",
    "child_protection",
    "gbv",
]

#: Open Referral HSDS service statuses.
ServiceStatus = Literal["active", "inactive", "defunct", "temporarily closed"]

Sex = Literal["female", "male", "other"]

BeneficiaryCategory = Literal[
    "ex_combatant", "associate", "dependent", "community_member", "youth_at_risk"
]

ProgrammeTrack = Literal["DDR", "DDRR", "CVR", "community"]

CATEGORIES: tuple[str, ...] = get_args(Category)
SERVICE_STATUSES: tuple[str, ...] = get_args(ServiceStatus)
SEXES: tuple[str, ...] = get_args(Sex)
BENEFICIARY_CATEGORIES: tuple[str, ...] = get_args(BeneficiaryCategory)
PROGRAMME_TRACKS: tuple[str, ...] = get_args(ProgrammeTrack)

#: Age below which a person is a minor (contract §5).
ADULT_AGE = 18
