"""Routes of the referral service."""

from fastapi import APIRouter

router = APIRouter()
