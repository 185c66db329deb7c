"""Routes: filled in by the referral_view module."""

from fastapi import APIRouter

router = APIRouter()
