"""Health of the service: database, broker and storage."""

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu import Connection
from sqlalchemy import text

from app.api.deps import SettingsDep
from app.core.config import Settings
from app.core.db import get_engine
from app.schemas import Health, HealthPart

router = APIRouter(tags=["health"])


def check_database() -> HealthPart:
    """Run ``SELECT 1`` on the database."""
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return HealthPart(ok=True)
    except Exception as exc:
        return HealthPart(ok=False, detail=f"{type(exc).__name__}: {exc}".splitlines()[0])


def check_broker(settings: Settings) -> HealthPart:
    """Open a connection to the Celery broker with a short timeout."""
    timeout = settings.broker_check_timeout
    try:
        with Connection(settings.celery_broker_url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        return HealthPart(ok=True)
    except Exception as exc:
        return HealthPart(ok=False, detail=f"{type(exc).__name__}: {exc}".splitlines()[0])


def check_storage(settings: Settings) -> HealthPart:
    """Write and remove a small file in the jobs folder."""
    try:
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.jobs_dir / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
        return HealthPart(ok=True)
    except OSError as exc:
        return HealthPart(ok=False, detail=f"{type(exc).__name__}: {exc}")


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "A part is down"}})
def healthz(settings: SettingsDep) -> JSONResponse:
    """Check the database, the broker and storage; 503 when one of them is down."""
    health = Health(
        status="ok",
        database=check_database(),
        broker=check_broker(settings),
        storage=check_storage(settings),
    )
    ok = health.database.ok and health.broker.ok and health.storage.ok
    health.status = "ok" if ok else "degraded"
    return JSONResponse(health.model_dump(), status_code=200 if ok else 503)
