"""The referral service:
routing, the closed-loop referral lifecycle, the partner inbox and webhooks.
"""

from fastapi import FastAPI

from icrs_shared.auth import JWKSCache
from icrs_shared.bus import Bus
from icrs_shared.runtime import ServiceSpec, build_app

from .api import router
from .consumers import consumers
from .models import metadata
from .reports.api import router as reports_router
from .settings import ReferralSettings
from .state import start_routing, stop_routing
from .webhooks.api import router as webhooks_router
from .webhooks.state import start_webhooks, stop_webhooks

#: The path prefixes this service owns in the platform's URL space (contract §1).
PATH_PREFIXES: tuple[str, ...] = ("/v1/referrals", "/v1/webhooks", "/v1/reports/referrals")

SPEC = ServiceSpec(
    name="referral",
    package="icrs_referral",
    title="ICRS referral",
    description="routing, the closed-loop referral lifecycle, the partner inbox and webhooks.",
    metadata=metadata,
    routers=(router, webhooks_router, reports_router),
    consumers=consumers,
    on_start=(start_routing, start_webhooks),
    on_stop=(stop_webhooks, stop_routing),
)


def create_app(settings: ReferralSettings, bus: Bus, *, jwks: JWKSCache | None = None) -> FastAPI:
    """The service's app; the caller owns `bus`. `jwks` overrides where token keys come from."""
    return build_app(SPEC, settings, bus, jwks=jwks)
