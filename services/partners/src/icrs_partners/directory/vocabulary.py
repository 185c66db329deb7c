"""The closed vocabularies of the directory (contract §4 and §5)."""

from __future__ import annotations

from typing import Literal, get_args

from icrs_shared.vocabulary import (
    ADULT_AGE,
    BENEFICIARY_CATEGORIES,
    CATEGORIES,
    PROGRAMME_TRACKS,
    SEXES,
    BeneficiaryCategory,
    Category,
    ProgrammeTrack,
    Sex,
)

#: Open Referral HSDS service statuses.
ServiceStatus = Literal["active", "inactive", "defunct", "temporarily closed"]
SERVICE_STATUSES: tuple[str, ...] = get_args(ServiceStatus)

__all__ = [
    "ADULT_AGE",
    "BENEFICIARY_CATEGORIES",
    "CATEGORIES",
    "PROGRAMME_TRACKS",
    "SERVICE_STATUSES",
    "SEXES",
    "BeneficiaryCategory",
    "Category",
    "ProgrammeTrack",
    "ServiceStatus",
    "Sex",
]
