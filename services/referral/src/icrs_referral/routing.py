"""Routing (contract §6), as a pure function of what the service knows.

For a need, every service of its category is a candidate; each is kept or left out with
the reasons why. Of those kept, the most specific area wins, then the lowest load
(active referrals / maximum), then the best acceptance record. A need none fits is
unmatched, with the reasons that left each candidate out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Age bands as the events carry them, as (lowest, highest) ages.
_BANDS: dict[str, tuple[int, int | None]] = {
    "0-11": (0, 11),
    "12-14": (12, 14),
    "15-17": (15, 17),
    "18-24": (18, 24),
    "25-34": (25, 34),
    "35-49": (35, 49),
    "50-64": (50, 64),
    "65+": (65, None),
}


@dataclass(frozen=True)
class OrganizationView:
    id: uuid.UUID
    active: bool
    child_safeguarding: bool


@dataclass(frozen=True)
class ServiceView:
    id: uuid.UUID
    organization_id: uuid.UUID
    category: str
    active: bool
    areas: tuple[str, ...]
    languages: tuple[str, ...] = ()
    eligibility: Mapping[str, Any] = field(default_factory=dict)
    maximum: int | None = None
    accepting: bool = True


@dataclass(frozen=True)
class CaseView:
    id: uuid.UUID
    organization_id: uuid.UUID
    is_minor: bool
    sex: str
    age_band: str
    area: str | None
    languages: tuple[str, ...] = ()
    beneficiary_category: str | None = None
    programme_track: str | None = None


@dataclass(frozen=True)
class ConsentView:
    purposes: tuple[str, ...]
    categories: tuple[str, ...]
    organizations: tuple[uuid.UUID, ...]
    expires_at: datetime | None = None
    active: bool = True

    def covers(self, category: str, organization_id: uuid.UUID, now: datetime) -> bool:
        return (
            self.active
            and "referral" in self.purposes
            and (self.expires_at is None or self.expires_at > now)
            and (category in self.categories or organization_id in self.organizations)
        )


@dataclass(frozen=True)
class Candidate:
    service_id: uuid.UUID
    organization_id: uuid.UUID
    specificity: int = 0
    load: float = 0.0
    acceptance: float = 0.0
    reasons: tuple[str, ...] = ()

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "service_id": str(self.service_id),
            "organization_id": str(self.organization_id),
        }
        if self.reasons:
            record["reasons"] = list(self.reasons)
        else:
            record.update(
                specificity=self.specificity,
                load=round(self.load, 4),
                acceptance=round(self.acceptance, 4),
            )
        return record


@dataclass(frozen=True)
class Decision:
    chosen: Candidate | None
    ranked: tuple[Candidate, ...]
    left_out: tuple[Candidate, ...]

    @property
    def reasons(self) -> list[str]:
        """Why nothing fits, when nothing does: each reason once, most frequent first."""
        if not self.ranked and not self.left_out:
            return ["no-service"]
        counts: dict[str, int] = {}
        for c in self.left_out:
            for r in c.reasons:
                counts[r] = counts.get(r, 0) + 1
        return sorted(counts, key=lambda r: (-counts[r], r))

    def as_record(self) -> dict[str, Any]:
        """What is kept with the referral (or the unmatched need): the decision and why."""
        return {
            "chosen": str(self.chosen.service_id) if self.chosen else None,
            "ranked": [c.as_record() for c in self.ranked],
            "left_out": [c.as_record() for c in self.left_out],
            "reasons": [] if self.chosen else self.reasons,
        }


def covering_area(service_areas: Iterable[str], area: str | None) -> str | None:
    """The most specific of the service's areas that covers `area` (SO11 covers SO1101)."""
    if area is None:
        return None
    covering = [a for a in service_areas if area.startswith(a)]
    return max(covering, key=len) if covering else None


def _age_fits(eligibility: Mapping[str, Any], band: str) -> bool:
    """Whether the age band meets the age limits (some age in the band does)."""
    low, high = _BANDS.get(band, (None, None))
    if low is None:
        return eligibility.get("min_age") is None and eligibility.get("max_age") is None
    min_age, max_age = eligibility.get("min_age"), eligibility.get("max_age")
    if max_age is not None and low > max_age:
        return False
    return not (min_age is not None and high is not None and high < min_age)


def reasons_against(
    service: ServiceView,
    organization: OrganizationView | None,
    case: CaseView,
    category: str,
    consents: Iterable[ConsentView],
    load: int,
    now: datetime,
) -> list[str]:
    """Why the service cannot take this need (empty: it can)."""
    e = service.eligibility
    out: list[str] = []
    if organization is None or not organization.active:
        out.append("organization-inactive")
    if not service.active:
        out.append("service-inactive")
    if covering_area(service.areas, case.area) is None:
        out.append("area")
    if service.languages and case.languages and not set(service.languages) & set(case.languages):
        out.append("language")
    if e.get("sexes") and case.sex not in e["sexes"]:
        out.append("sex")
    if not _age_fits(e, case.age_band):
        out.append("age")
    if (
        e.get("beneficiary_categories")
        and case.beneficiary_category not in e["beneficiary_categories"]
    ):
        out.append("beneficiary-category")
    if e.get("programme_tracks") and case.programme_track not in e["programme_tracks"]:
        out.append("programme-track")
    if case.is_minor and not e.get("accepts_minors", False):
        out.append("minors-not-accepted")
    if case.is_minor and (organization is None or not organization.child_safeguarding):
        out.append("no-child-safeguarding")
    if not any(c.covers(category, service.organization_id, now) for c in consents):
        out.append("no-consent")
    if not service.accepting:
        out.append("not-accepting")
    elif service.maximum is not None and load >= service.maximum:
        out.append("at-capacity")
    return out


def route(
    *,
    category: str,
    case: CaseView,
    services: Iterable[ServiceView],
    organizations: Mapping[uuid.UUID, OrganizationView],
    consents: Iterable[ConsentView],
    loads: Mapping[uuid.UUID, int],
    acceptance: Mapping[uuid.UUID, float],
    tried: Iterable[uuid.UUID] = (),
    now: datetime,
) -> Decision:
    """Choose a service for a need of `category`; `tried` are services already tried for
    it (rejected or expired), which rank but are not chosen again."""
    consents = list(consents)
    tried_set = set(tried)
    fitting: list[Candidate] = []
    left_out: list[Candidate] = []
    for service in services:
        if service.category != category:
            continue
        load = loads.get(service.id, 0)
        org = organizations.get(service.organization_id)
        reasons = reasons_against(service, org, case, category, consents, load, now)
        if service.id in tried_set:
            reasons.append("tried")
        if reasons:
            left_out.append(Candidate(service.id, service.organization_id, reasons=tuple(reasons)))
            continue
        area = covering_area(service.areas, case.area) or ""
        fitting.append(
            Candidate(
                service.id,
                service.organization_id,
                specificity=len(area),
                load=load / service.maximum if service.maximum else 0.0,
                acceptance=acceptance.get(service.id, 0.0),
            )
        )
    ranked = sorted(
        fitting, key=lambda c: (-c.specificity, c.load, -c.acceptance, str(c.service_id))
    )
    return Decision(
        chosen=ranked[0] if ranked else None,
        ranked=tuple(ranked),
        left_out=tuple(sorted(left_out, key=lambda c: str(c.service_id))),
    )
