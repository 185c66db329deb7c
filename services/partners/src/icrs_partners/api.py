"""Routes of the partners service."""

from fastapi import APIRouter

from .directory.api import router as directory_router
from .oauth.api import router as oauth_router
from .organizations.api import router as organizations_router

router = APIRouter()
router.include_router(oauth_router)
router.include_router(organizations_router)
router.include_router(directory_router)
