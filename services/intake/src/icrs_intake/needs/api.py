"""Routes: filled in by the needs module."""

from fastapi import APIRouter

router = APIRouter()
