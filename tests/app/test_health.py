"""GET /healthz reports the database, the broker and storage, and answers 503 when one is down."""

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reload_settings


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/healthz"])
def test_healthy(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"] and body["storage"]["ok"]


def test_redis_broker_checked(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEPGUARD_BROKER_URL", "redis://127.0.0.1:6379/15")
    reload_settings()
    assert client.get("/healthz").json()["broker"]["ok"] is True


def test_broker_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEPGUARD_BROKER_URL", "redis://127.0.0.1:1/0")
    reload_settings()
    r = client.get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded"
    assert body["broker"]["ok"] is False and body["broker"]["detail"]
    assert body["database"]["ok"] and body["storage"]["ok"]


def test_database_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEPGUARD_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    reload_settings()
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["database"]["ok"] is False
    assert r.json()["database"]["detail"]


def test_storage_not_writable(client: TestClient, data_dir: Path) -> None:
    shutil.rmtree(data_dir / "jobs", ignore_errors=True)
    (data_dir / "jobs").write_text("a file where the jobs folder should be")
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["storage"]["ok"] is False
