"""Who is calling: the identity a validated access token carries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..errors import Forbidden


@dataclass(frozen=True, slots=True)
class Caller:
    client_id: str
    organization_id: str | None
    scopes: frozenset[str]
    subject: str
    token_id: str | None = None

    def has_scopes(self, *scopes: str) -> bool:
        return self.scopes.issuperset(scopes)


def organization_of(caller: Caller) -> uuid.UUID:
    """The caller's organization, which every record a service keeps for it belongs to;
    403 for a token that names none."""
    try:
        return uuid.UUID(str(caller.organization_id))
    except ValueError:
        raise Forbidden("the token names no organization") from None
