"""Routes of the partners service: organizations."""

from fastapi import APIRouter

router = APIRouter()
