"""Who is calling: the identity a validated access token carries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    client_id: str
    organization_id: str | None
    scopes: frozenset[str]
    subject: str
    token_id: str | None = None

    def has_scopes(self, *scopes: str) -> bool:
        return self.scopes.issuperset(scopes)
