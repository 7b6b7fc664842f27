"""Fixtures for the service tests: a fresh data dir with a migrated SQLite database per test."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import get_settings
from app.core.db import dispose_engines, session_scope, upgrade_database
from app.core.security import create_token

SERVICE_ENV = (
    "SEPGUARD_DATABASE_URL",
    "SEPGUARD_BROKER_URL",
    "SEPGUARD_MAX_UPLOAD_BYTES",
    "SEPGUARD_MAX_UNCOMPRESSED_BYTES",
    "SEPGUARD_MAX_FILES",
    "SEPGUARD_MAX_PIXELS",
    "SEPGUARD_MAX_RATIO",
    "SEPGUARD_SHARD_SIZE",
)


def reload_settings() -> None:
    """Apply changed ``SEPGUARD_*`` variables (database and broker included)."""
    get_settings.cache_clear()
    dispose_engines()
    try:
        from worker.celery_app import celery_app, configure
    except ImportError:
        return
    configure()
    celery_app.close()  # pooled connections still point at the previous broker
    celery_app.amqp._producer_pool = None


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty data dir with a migrated SQLite database, configured through the environment."""
    monkeypatch.setenv("SEPGUARD_DATA_DIR", str(tmp_path / "data"))
    for name in SERVICE_ENV:
        monkeypatch.delenv(name, raising=False)
    reload_settings()
    upgrade_database()
    yield tmp_path / "data"
    reload_settings()


@pytest.fixture
def tokens(data_dir: Path) -> dict[str, str]:
    """Tokens of two owners, alice and bob."""
    with session_scope() as session:
        return {"alice": create_token(session, "alice", "test"), "bob": create_token(session, "bob", "test")}


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as c:
        yield c
