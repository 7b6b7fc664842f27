"""The REST API router, mounted under ``/api/v1``."""

from fastapi import APIRouter

from app.api.routes import health, jobs

api_router = APIRouter()
api_router.include_router(jobs.router)
api_router.include_router(health.router)
