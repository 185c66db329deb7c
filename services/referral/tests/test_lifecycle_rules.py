"""The lifecycle table itself: every (state, target, actor) triple."""

from __future__ import annotations

import itertools

import pytest

from icrs_referral.lifecycle import (
    ACTORS,
    STATUSES,
    TERMINAL,
    TRANSITIONS,
    allowed,
    check,
    event_verb,
)
from icrs_shared.errors import Conflict, Forbidden, Invalid

CONTRACT = {
    "requested": {"received", "accepted", "rejected", "cancelled", "expired"},
    "received": {"accepted", "rejected", "cancelled", "expired"},
    "accepted": {"in-progress", "on-hold", "completed", "failed", "cancelled"},
    "in-progress": {"on-hold", "completed", "failed", "cancelled"},
    "on-hold": {"in-progress", "completed", "failed", "cancelled"},
}


def test_the_table_is_the_contracts() -> None:
    for status in STATUSES:
        moves = set(TRANSITIONS.get(status, {})) - {"entered-in-error"}
        assert moves == CONTRACT.get(status, set()), status
    assert all(not CONTRACT.get(s) for s in TERMINAL)


@pytest.mark.parametrize(
    ("current", "target", "actor"), list(itertools.product(STATUSES, STATUSES, ACTORS))
)
def test_every_triple(current: str, target: str, actor: str) -> None:
    moves = TRANSITIONS.get(current, {})
    reason = "at-capacity" if target == "rejected" else None
    outcome = "service-provided" if target == "completed" else None
    if target in moves and actor in moves[target]:
        check(current, target, actor, reason=reason, outcome=outcome)
        assert event_verb(current, target)
    elif target in moves:
        with pytest.raises(Forbidden):
            check(current, target, actor, reason=reason, outcome=outcome)
    else:
        with pytest.raises(Conflict) as refused:
            check(current, target, actor, reason=reason, outcome=outcome)
        assert refused.value.extra["allowed"] == allowed(current, actor)


def test_who_does_what() -> None:
    assert allowed("requested", "provider") == ["received", "accepted", "rejected"]
    assert allowed("requested", "requester") == ["cancelled", "entered-in-error"]
    assert allowed("requested", "platform") == ["cancelled", "expired"]
    assert allowed("completed", "provider") == []
    assert allowed("completed", "requester") == ["entered-in-error"]


def test_a_rejection_needs_a_reason_and_a_completion_an_outcome() -> None:
    with pytest.raises(Invalid):
        check("requested", "rejected", "provider", reason=None, outcome=None)
    with pytest.raises(Invalid):
        check("requested", "rejected", "provider", reason="because", outcome=None)
    with pytest.raises(Invalid):
        check("accepted", "completed", "provider", reason=None, outcome=None)


def test_event_verbs() -> None:
    assert event_verb("accepted", "in-progress") == "started"
    assert event_verb("on-hold", "in-progress") == "resumed"
    assert event_verb("in-progress", "on-hold") == "held"
    assert event_verb("accepted", "entered-in-error") == "cancelled"
