"""Routes: filled in by the reports module."""

from fastapi import APIRouter

router = APIRouter()
