"""Fixtures shared by the service and worker tests: a fresh data dir with a migrated SQLite
database (and the embedded SQLite broker) per test, configured through ``SEPGUARD_*``."""

from collections.abc import Iterator
from pathlib import Path

import pytest

SEPGUARD_ENV = (
    "SEPGUARD_DATABASE_URL",
    "SEPGUARD_BROKER_URL",
    "SEPGUARD_MAX_UPLOAD_BYTES",
    "SEPGUARD_MAX_UNCOMPRESSED_BYTES",
    "SEPGUARD_MAX_FILES",
    "SEPGUARD_MAX_PIXELS",
    "SEPGUARD_MAX_RATIO",
    "SEPGUARD_SHARD_SIZE",
    "SEPGUARD_COOKIE_SECURE",
    "SEPGUARD_TORCH_THREADS",
    "SEPGUARD_WORKER_LEASE_SECONDS",
    "SEPGUARD_PROGRESS_INTERVAL_SECONDS",
)


def reload_settings() -> None:
    """Apply changed ``SEPGUARD_*`` variables: settings, database engines and the Celery app."""
    from app.core.config import get_settings
    from app.core.db import dispose_engines
    from app.jobs.task_queue import celery_app, configure

    get_settings.cache_clear()
    dispose_engines()
    configure()
    celery_app.close()  # pooled connections still point at the previous broker
    celery_app.amqp._producer_pool = None


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty data dir with a migrated SQLite database and the embedded SQLite broker."""
    from app.core.db import upgrade_database

    monkeypatch.setenv("SEPGUARD_DATA_DIR", str(tmp_path / "data"))
    for name in SEPGUARD_ENV:
        monkeypatch.delenv(name, raising=False)
    reload_settings()
    upgrade_database()
    yield tmp_path / "data"
    reload_settings()
