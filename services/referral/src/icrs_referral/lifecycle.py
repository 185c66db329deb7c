"""The referral lifecycle (contract §6): which status may follow which, and who may make
each move. The one place these rules live; the service and its tests read them here.

States follow the FHIR Task status codes as the HL7 Gravity referral profile uses them.
"""

from __future__ import annotations

from typing import Literal, get_args

from icrs_shared.errors import Conflict, FieldError, Forbidden, Invalid

Status = Literal[
    "requested",
    "received",
    "accepted",
    "in-progress",
    "on-hold",
    "completed",
    "failed",
    "rejected",
    "cancelled",
    "expired",
    "entered-in-error",
]
Actor = Literal["provider", "requester", "platform"]

STATUSES: tuple[str, ...] = get_args(Status)
ACTORS: tuple[str, ...] = get_args(Actor)
TERMINAL = frozenset(
    {"rejected", "cancelled", "expired", "completed", "failed", "entered-in-error"}
)
#: States in which the provider holds the referral and may read the referral view.
LIVE = frozenset({"requested", "received", "accepted", "in-progress", "on-hold"})
#: States that count against a service's capacity.
ACTIVE = frozenset({"accepted", "in-progress", "on-hold"})
#: States in which the provider has not yet answered.
AWAITING = frozenset({"requested", "received"})
#: States of a referral its provider accepted (whatever came of it), and of one it
#: declined or let expire: together, the referrals it answered.
ACCEPTED = frozenset({"accepted", "in-progress", "on-hold", "completed", "failed"})
DECLINED = frozenset({"rejected", "expired"})


def status_in(statuses: frozenset[str]) -> str:
    """`status IN (...)` with the values written out: the predicate of a partial index,
    and of the queries that must match it (a bound parameter would not)."""
    return "status IN ({})".format(", ".join(f"'{s}'" for s in sorted(statuses)))


_P: frozenset[str] = frozenset({"provider"})
_R: frozenset[str] = frozenset({"requester"})
_RP: frozenset[str] = frozenset({"requester", "platform"})
_PLATFORM: frozenset[str] = frozenset({"platform"})

#: status -> {next status: who may make that move}
TRANSITIONS: dict[str, dict[str, frozenset[str]]] = {
    "requested": {
        "received": _P,
        "accepted": _P,
        "rejected": _P,
        "cancelled": _RP,
        "expired": _PLATFORM,
    },
    "received": {"accepted": _P, "rejected": _P, "cancelled": _RP, "expired": _PLATFORM},
    "accepted": {
        "in-progress": _P,
        "on-hold": _P,
        "completed": _P,
        "failed": _P,
        "cancelled": _RP,
    },
    "in-progress": {"on-hold": _P, "completed": _P, "failed": _P, "cancelled": _RP},
    "on-hold": {"in-progress": _P, "completed": _P, "failed": _P, "cancelled": _RP},
}
# A referral made in error is marked so by its requester, whatever its state.
for _status in STATUSES:
    if _status != "entered-in-error":
        TRANSITIONS.setdefault(_status, {})["entered-in-error"] = _R

REJECT_REASONS = ("at-capacity", "not-eligible", "unreachable", "other")
#: Why the platform cancels a referral.
PLATFORM_REASONS = ("consent-withdrawn", "case-erased", "case-closed")


def allowed(status: str, actor: str | None = None) -> list[str]:
    """The statuses that may follow `status` (for `actor`, when given)."""
    moves = TRANSITIONS.get(status, {})
    return [s for s, who in moves.items() if actor is None or actor in who]


def check(
    current: str, target: str, actor: str, *, reason: str | None, outcome: str | None
) -> None:
    """Raise unless `actor` may move a referral from `current` to `target` as asked:
    409 naming the allowed moves, 403 for a move that is someone else's, 422 for a
    missing reason or outcome."""
    moves = TRANSITIONS.get(current, {})
    if target not in moves:
        raise Conflict(
            f"a {current} referral cannot become {target}",
            code="transition-not-allowed",
            title="Transition not allowed",
            extra={"status": current, "allowed": allowed(current, actor)},
        )
    if actor not in moves[target]:
        who = " or ".join(sorted(moves[target]))
        raise Forbidden(f"only the {who} may make a referral {target}")
    if target == "rejected" and reason not in REJECT_REASONS:
        raise Invalid(
            "a rejection needs a reason",
            errors=[
                FieldError(
                    field="body.reason",
                    message="one of " + ", ".join(REJECT_REASONS),
                    code="reason",
                )
            ],
        )
    if target == "completed" and not outcome:
        raise Invalid(
            "a completed referral needs its outcome",
            errors=[FieldError(field="body.outcome", message="required", code="missing")],
        )


def event_verb(current: str, target: str) -> str:
    """The `referral.<verb>` event a move emits."""
    if target == "in-progress":
        return "resumed" if current == "on-hold" else "started"
    return {
        "received": "received",
        "accepted": "accepted",
        "rejected": "rejected",
        "on-hold": "held",
        "completed": "completed",
        "failed": "failed",
        "cancelled": "cancelled",
        "expired": "expired",
        # Not a verb of its own: a cancellation whose status says it was a mistake.
        "entered-in-error": "cancelled",
    }[target]
