"""Routes of the intake service."""

from fastapi import APIRouter

from .cases.api import router as cases_router
from .consents.api import router as consents_router
from .imports.api import router as imports_router
from .needs.api import router as needs_router
from .plans.api import router as plans_router
from .referral_view.api import router as referral_view_router
from .reports.api import router as reports_router

router = APIRouter()
for part in (
    cases_router,
    consents_router,
    needs_router,
    plans_router,
    referral_view_router,
    imports_router,
    reports_router,
):
    router.include_router(part)
