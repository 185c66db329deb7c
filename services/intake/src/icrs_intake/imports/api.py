"""Routes: filled in by the imports module."""

from fastapi import APIRouter

router = APIRouter()
