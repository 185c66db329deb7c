"""Routes of the partners service: oauth."""

from fastapi import APIRouter

router = APIRouter()
