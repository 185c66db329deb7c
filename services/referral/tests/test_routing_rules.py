"""Routing as a pure function: each rule that leaves a service out, and the ranking."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from icrs_referral.routing import (
    CaseView,
    ConsentView,
    OrganizationView,
    ServiceView,
    covering_area,
    route,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
ORG, OTHER_ORG = uuid.UUID(int=1), uuid.UUID(int=2)
CASE = CaseView(
    id=uuid.UUID(int=100),
    organization_id=uuid.UUID(int=99),
    is_minor=False,
    sex="female",
    age_band="25-34",
    area="SO1101",
    languages=("so",),
    beneficiary_category="ex_combatant",
    programme_track="DDR",
)
CONSENT = ConsentView(purposes=("referral",), categories=("health",), organizations=())
ORGS = {
    ORG: OrganizationView(ORG, active=True, child_safeguarding=True),
    OTHER_ORG: OrganizationView(OTHER_ORG, active=True, child_safeguarding=False),
}


def service(n: int, **kw: Any) -> ServiceView:
    fields: dict[str, Any] = {
        "id": uuid.UUID(int=1000 + n),
        "organization_id": ORG,
        "category": "health",
        "active": True,
        "areas": ("SO11",),
        "languages": ("so", "ar"),
        "eligibility": {},
        "maximum": 10,
        "accepting": True,
    }
    return ServiceView(**{**fields, **kw})


def decide(services: list[ServiceView], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "category": "health",
        "case": CASE,
        "services": services,
        "organizations": ORGS,
        "consents": [CONSENT],
        "loads": {},
        "acceptance": {},
        "now": NOW,
    }
    return route(**{**args, **kw})


def test_an_area_covers_its_subareas_only() -> None:
    assert covering_area(["SO", "SO11"], "SO1101") == "SO11"
    assert covering_area(["SO12"], "SO1101") is None
    assert covering_area(["SO1101"], "SO11") is None


def test_the_most_specific_area_wins_then_the_lowest_load_then_acceptance() -> None:
    country, region, district = (
        service(1, areas=("SO",)),
        service(2, areas=("SO11",)),
        service(3, areas=("SO1101",)),
    )
    assert decide([country, region, district]).chosen.service_id == district.id
    busy, idle = service(4, maximum=10), service(5, maximum=10)
    loads = {busy.id: 5, idle.id: 1}
    assert decide([busy, idle], loads=loads).chosen.service_id == idle.id
    good, poor = service(6), service(7)
    chosen = decide([good, poor], acceptance={good.id: 0.9, poor.id: 0.2}).chosen
    assert chosen.service_id == good.id


@pytest.mark.parametrize(
    ("change", "case_change", "reason"),
    [
        ({"areas": ("SO12",)}, {}, "area"),
        ({"languages": ("en",)}, {}, "language"),
        ({"eligibility": {"sexes": ["male"]}}, {}, "sex"),
        ({"eligibility": {"min_age": 35}}, {}, "age"),
        ({"eligibility": {"max_age": 24}}, {}, "age"),
        ({"eligibility": {"beneficiary_categories": ["dependent"]}}, {}, "beneficiary-category"),
        ({"eligibility": {"programme_tracks": ["CVR"]}}, {}, "programme-track"),
        ({"accepting": False}, {}, "not-accepting"),
        ({"active": False}, {}, "service-inactive"),
        ({"organization_id": uuid.UUID(int=77)}, {}, "organization-inactive"),
        ({}, {"is_minor": True, "age_band": "15-17"}, "minors-not-accepted"),
    ],
)
def test_each_rule_leaves_a_service_out_with_its_reason(
    change: dict[str, Any], case_change: dict[str, Any], reason: str
) -> None:
    decision = decide([service(1, **change)], case=replace(CASE, **case_change))
    assert decision.chosen is None
    assert reason in decision.left_out[0].reasons
    assert reason in decision.reasons


def test_capacity_full() -> None:
    full = service(1, maximum=2)
    decision = decide([full], loads={full.id: 2})
    assert decision.chosen is None
    assert decision.reasons == ["at-capacity"]
    assert decide([full], loads={full.id: 1}).chosen is not None


def test_women_only_service() -> None:
    women = service(1, eligibility={"sexes": ["female"]})
    assert decide([women]).chosen is not None
    assert decide([women], case=replace(CASE, sex="male")).reasons == ["sex"]
    assert decide([women], case=replace(CASE, sex="unknown")).reasons == ["sex"]


def test_a_minor_goes_only_to_a_safeguarding_verified_organization() -> None:
    minor = replace(CASE, is_minor=True, age_band="15-17")
    verified = service(1, eligibility={"accepts_minors": True})
    unverified = service(2, organization_id=OTHER_ORG, eligibility={"accepts_minors": True})
    decision = decide([unverified, verified], case=minor)
    assert decision.chosen.service_id == verified.id
    assert decision.left_out[0].reasons == ("no-child-safeguarding",)
    assert decide([unverified], case=minor).reasons == ["no-child-safeguarding"]


def test_consent_limits_categories_organizations_and_time() -> None:
    legal = service(1, category="legal")
    assert decide([legal], category="legal").reasons == ["no-consent"]
    named = ConsentView(purposes=("referral",), categories=(), organizations=(ORG,))
    assert decide([legal], category="legal", consents=[named]).chosen is not None
    expired = replace(CONSENT, expires_at=NOW - timedelta(seconds=1))
    assert decide([service(2)], consents=[expired]).reasons == ["no-consent"]
    follow_up_only = replace(CONSENT, purposes=("follow_up",))
    assert decide([service(3)], consents=[follow_up_only]).reasons == ["no-consent"]
    withdrawn = replace(CONSENT, active=False)
    assert decide([service(4)], consents=[withdrawn]).reasons == ["no-consent"]


def test_tried_services_are_not_chosen_again() -> None:
    first, second = service(1, areas=("SO1101",)), service(2)
    decision = decide([first, second], tried=[first.id])
    assert decision.chosen.service_id == second.id
    assert decide([first], tried=[first.id]).reasons == ["tried"]


def test_no_service_of_the_category() -> None:
    decision = decide([service(1, category="legal")])
    assert decision.chosen is None
    assert decision.reasons == ["no-service"]
    assert decision.as_record() == {
        "chosen": None,
        "ranked": [],
        "left_out": [],
        "reasons": ["no-service"],
    }


def test_the_record_says_why() -> None:
    chosen, out = service(1, areas=("SO1101",)), service(2, languages=("en",))
    record = decide([chosen, out]).as_record()
    assert record["chosen"] == str(chosen.id)
    assert record["ranked"][0]["specificity"] == len("SO1101")
    assert record["left_out"] == [
        {"service_id": str(out.id), "organization_id": str(ORG), "reasons": ["language"]}
    ]
    assert record["reasons"] == []
