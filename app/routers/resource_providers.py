"""Placeholder router: routes arrive with their capability issue."""

from fastapi import APIRouter

router = APIRouter()
