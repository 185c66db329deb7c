"""Routes of the intake service."""

from fastapi import APIRouter

router = APIRouter()
