"""GET /healthz reports the database, the broker, storage and the live workers, and answers 503
when one is down or no worker is alive."""

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import reload_settings


@pytest.fixture
def client(client: TestClient) -> TestClient:
    """The application with one live worker (the presence beat a running worker writes)."""
    from worker.presence import beat

    beat()
    return client


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/healthz"])
def test_healthy(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"] and body["storage"]["ok"]
    assert body["workers"] == 1


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
    assert body["broker"] == {"ok": False}  # the reason is in the server log, not in the answer
    assert "127.0.0.1" not in r.text and "Error" not in r.text
    assert body["database"]["ok"] and body["storage"]["ok"]


def test_database_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEPGUARD_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    reload_settings()
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["database"] == {"ok": False}


def test_storage_not_writable(client: TestClient, data_dir: Path) -> None:
    shutil.rmtree(data_dir / "jobs", ignore_errors=True)
    (data_dir / "jobs").write_text("a file where the jobs folder should be")
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["storage"]["ok"] is False
