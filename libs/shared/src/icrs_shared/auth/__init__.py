"""The resource-server side of OAuth 2.0: local validation of JWT access tokens."""

from icrs_shared.auth.any_scope import require_any_scope
from icrs_shared.auth.caller import Caller, organization_of
from icrs_shared.auth.dependencies import AccessTokenValidator, bearer_scheme, require_scopes
from icrs_shared.auth.errors import InsufficientScope, InvalidToken, MissingToken
from icrs_shared.auth.jwks import JWKSCache, JWKSUnavailable
from icrs_shared.auth.tokens import TokenValidator

__all__ = [
    "AccessTokenValidator",
    "Caller",
    "InsufficientScope",
    "InvalidToken",
    "JWKSCache",
    "JWKSUnavailable",
    "MissingToken",
    "TokenValidator",
    "bearer_scheme",
    "organization_of",
    "require_any_scope",
    "require_scopes",
]
