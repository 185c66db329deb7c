"""Routes: filled in by the plans module."""

from fastapi import APIRouter

router = APIRouter()
