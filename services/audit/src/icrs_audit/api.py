"""Routes of the audit service."""

from fastapi import APIRouter

router = APIRouter()
