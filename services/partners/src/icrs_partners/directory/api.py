"""Routes of the partners service: directory."""

from fastapi import APIRouter

router = APIRouter()
