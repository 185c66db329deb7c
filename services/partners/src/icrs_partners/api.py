"""Routes of the partners service."""

from fastapi import APIRouter

router = APIRouter()
