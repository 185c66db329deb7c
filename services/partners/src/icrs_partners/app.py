"""The partners service:
the organization and service directory, and the OAuth 2.0 authorization server.
"""

from fastapi import FastAPI

from icrs_shared.auth import JWKSCache
from icrs_shared.bus import Bus
from icrs_shared.runtime import ServiceSpec, build_app

from .api import router
from .bootstrap import bootstrap_admin
from .consumers import consumers
from .models import metadata
from .oauth.jwks import own_issuer_jwks
from .oauth.state import start_authorization_server
from .settings import PartnersSettings

#: The path prefixes this service owns in the platform's URL space (contract §1).
PATH_PREFIXES: tuple[str, ...] = ("/oauth", "/.well-known", "/v1/organizations", "/v1/services")

SPEC = ServiceSpec(
    name="partners",
    package="icrs_partners",
    title="ICRS partners",
    description="the organization and service directory, and the OAuth 2.0 authorization server.",
    metadata=metadata,
    routers=(router,),
    consumers=consumers,
    on_start=(bootstrap_admin, start_authorization_server),
)


def create_app(settings: PartnersSettings, bus: Bus, *, jwks: JWKSCache | None = None) -> FastAPI:
    """The service's app; the caller owns `bus`. `jwks` overrides where token keys come from."""
    return build_app(SPEC, settings, bus, jwks=jwks or own_issuer_jwks(settings))
