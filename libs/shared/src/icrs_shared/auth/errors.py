"""The 401 and 403 answers of a resource server, with their RFC 6750 challenges."""

from __future__ import annotations

from collections.abc import Iterable

from icrs_shared.errors import Forbidden, Unauthorized

REALM = "icrs"


def bearer_challenge(**params: str) -> str:
    """A `WWW-Authenticate` value: `Bearer realm="icrs"` plus the given auth-params."""
    attrs = {"realm": REALM, **params}
    return "Bearer " + ", ".join(f'{name}="{_quotable(value)}"' for name, value in attrs.items())


def _quotable(value: str) -> str:
    # RFC 6750 §3 allows only %x20-21 / %x23-5B / %x5D-7E inside these quoted strings.
    return "".join(ch for ch in value if " " <= ch <= "~" and ch not in '"\\')


class MissingToken(Unauthorized):
    def __init__(self, detail: str = "bearer token required") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": bearer_challenge()})


class InvalidToken(Unauthorized):
    """The token cannot be trusted; `detail` says why in generic words, never echoing it."""

    def __init__(self, detail: str) -> None:
        challenge = bearer_challenge(error="invalid_token", error_description=detail)
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class InsufficientScope(Forbidden):
    def __init__(self, required: Iterable[str]) -> None:
        scope = " ".join(sorted(required))
        challenge = bearer_challenge(error="insufficient_scope", scope=scope)
        super().__init__(f"token lacks scope: {scope}", headers={"WWW-Authenticate": challenge})
