"""Routes: filled in by the consents module."""

from fastapi import APIRouter

router = APIRouter()
