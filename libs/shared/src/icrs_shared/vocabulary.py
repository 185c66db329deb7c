"""The platform's closed vocabularies (contract §4 and §5)."""

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

Sex = Literal["female", "male", "other"]

BeneficiaryCategory = Literal[
    "ex_combatant", "associate", "dependent", "community_member", "youth_at_risk"
]

ProgrammeTrack = Literal["DDR", "DDRR", "CVR", "community"]

CATEGORIES: tuple[str, ...] = get_args(Category)
SEXES: tuple[str, ...] = get_args(Sex)
BENEFICIARY_CATEGORIES: tuple[str, ...] = get_args(BeneficiaryCategory)
PROGRAMME_TRACKS: tuple[str, ...] = get_args(ProgrammeTrack)

#: Age below which a person is a minor (contract §5).
ADULT_AGE = 18
