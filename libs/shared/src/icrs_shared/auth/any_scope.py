"""A dependency for routes that any one of several scopes opens."""

# No `from __future__ import annotations`: FastAPI reads the dependency's signature at
# runtime, and its annotation refers to a local it could not resolve from a string.

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends

from .caller import Caller
from .dependencies import require_scopes
from .errors import InsufficientScope


def require_any_scope(*scopes: str) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """The `Caller` of a valid token holding at least one of `scopes`."""
    accepted = frozenset(scopes)
    authenticated = require_scopes()

    async def caller_with_any_scope(
        caller: Annotated[Caller, Depends(authenticated)],
    ) -> Caller:
        if not caller.scopes & accepted:
            raise InsufficientScope(accepted)
        return caller

    return caller_with_any_scope
