"""Health of the service: database, broker, storage and live workers.

Clients see only whether each part is up (and how many workers there are); what went wrong,
with hosts and exception text, goes to the server log.
"""

import logging
import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu import Connection
from sqlalchemy import text

from app.api.deps import SettingsDep
from app.core.config import Settings
from app.core.db import get_engine
from app.jobs.presence import live_workers
from app.schemas import Health, HealthPart

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


def part(name: str, exc: Exception | None) -> HealthPart:
    """Up or down; the reason goes to the log only."""
    if exc is not None:
        log.warning("health check: %s is down: %s: %s", name, type(exc).__name__, exc)
    return HealthPart(ok=exc is None)


def check_database() -> HealthPart:
    """Run ``SELECT 1`` on the database."""
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return part("database", None)
    except Exception as exc:
        return part("database", exc)


def check_broker(settings: Settings) -> HealthPart:
    """Open a connection to the Celery broker with a short timeout."""
    timeout = settings.broker_check_timeout
    try:
        with Connection(settings.celery_broker_url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        return part("broker", None)
    except Exception as exc:
        return part("broker", exc)


def check_storage(settings: Settings) -> HealthPart:
    """Write and remove a small file in the jobs folder."""
    try:
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.jobs_dir / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
        return part("storage", None)
    except OSError as exc:
        return part("storage", exc)


def count_workers(settings: Settings) -> int:
    """Workers that showed they were alive within the last lease."""
    return live_workers(settings.worker_lease_seconds)


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "A part is down"}})
def healthz(settings: SettingsDep) -> JSONResponse:
    """Check the database, the broker, storage and the workers; 503 when one is down or no worker is alive."""
    health = Health(
        status="ok",
        database=check_database(),
        broker=check_broker(settings),
        storage=check_storage(settings),
        workers=count_workers(settings),
    )
    ok = health.database.ok and health.broker.ok and health.storage.ok and health.workers > 0
    health.status = "ok" if ok else "degraded"
    return JSONResponse(health.model_dump(), status_code=200 if ok else 503)


@router.get("/livez")
def livez() -> dict[str, str]:
    """The API process answers (for container health checks; says nothing about the other parts)."""
    return {"status": "ok"}
