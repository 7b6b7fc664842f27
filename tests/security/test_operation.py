"""Operation (issue items 12, 13, 16): the service heals a dead worker and says when none is alive,
tells clients nothing about its internals, and reads settings only from where it is told to."""

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from tests.app.helpers import bearer, dataset_zip, job_count
from tests.conftest import reload_settings

ROOT = Path(__file__).resolve().parents[2]


# 12. A dead worker ---------------------------------------------------------------------------------


def test_healthz_is_503_with_no_live_worker(
    client: TestClient, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.presence import beat, presence_file

    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["workers"] == 0 and r.json()["status"] == "degraded"
    beat()
    assert client.get("/healthz").json() | {"status": "ok"} == client.get("/healthz").json()
    assert client.get("/healthz").json()["workers"] == 1
    stale = time.time() - 10_000  # a worker killed long ago stops beating
    os.utime(presence_file(), (stale, stale))
    assert client.get("/healthz").json()["workers"] == 0
    assert client.get("/livez").status_code == 200  # the API process itself is fine


def worker_children(server: psutil.Process) -> list[psutil.Process]:
    return [c for c in server.children() if "worker" in " ".join(c.cmdline()) and c.status() != psutil.STATUS_ZOMBIE]


def test_serve_restarts_a_killed_worker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPGUARD_")}
    env |= {"SEPGUARD_DATA_DIR": str(tmp_path / "data"), "SEPGUARD_WORKER_LEASE_SECONDS": "4", "PYTHONUNBUFFERED": "1"}
    with socket_port() as port:
        pass
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        server = psutil.Process(process.pid)
        first = wait_for(lambda: worker_children(server), "a worker")[0]
        wait_for(lambda: httpx.get(f"{base}/healthz", timeout=5).json().get("workers") == 1, "the worker to report")
        os.kill(first.pid, signal.SIGKILL)
        second = wait_for(lambda: [w for w in worker_children(server) if w.pid != first.pid], "a new worker")[0]
        assert second.pid != first.pid
        wait_for(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 200, "healthz ok again")
        text = log.read_text(errors="replace")
        assert re.search(r"the worker exited with code -9; restarting it in 1 s", text), text[-3000:]
        assert f"restarted the worker (pid {second.pid})" in text
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class socket_port:
    """A free TCP port on 127.0.0.1."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *_: object) -> None:
        return None


def wait_for(check, what: str, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (httpx.HTTPError, ValueError, psutil.Error):
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


# 13. Leaks in errors -------------------------------------------------------------------------------


def test_broker_down_tells_clients_words_and_the_log_details(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SEPGUARD_BROKER_URL", "redis://127.0.0.1:1/0")
    reload_settings()
    with caplog.at_level(logging.WARNING):
        r = client.post("/api/v1/jobs", headers=bearer(tokens["alice"]), files={"dataset": ("d.zip", dataset_zip())})
        health = client.get("/healthz")
    assert r.status_code == 503 and r.json() == {"detail": "the job queue is unreachable; try again in a minute"}
    assert health.status_code == 503 and health.json()["broker"] == {"ok": False}
    for body in (r.text, health.text):
        assert "127.0.0.1:1" not in body and "Error" not in body and "redis" not in body.lower()
    assert "127.0.0.1:1" in caplog.text or "Connection refused" in caplog.text  # the details are logged
    assert job_count() == 0


# 16. Settings only from an explicit .env -----------------------------------------------------------


def test_env_file_is_read_only_when_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import Settings

    (tmp_path / ".env").write_text("SEPGUARD_MAX_FILES=7\nSEPGUARD_WORKER_LEASE_SECONDS=9\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEPGUARD_MAX_FILES", raising=False)
    monkeypatch.delenv("SEPGUARD_WORKER_LEASE_SECONDS", raising=False)
    monkeypatch.delenv("SEPGUARD_ENV_FILE", raising=False)
    assert Settings().max_files == 200_000  # a .env in the current folder is ignored
    assert Settings().worker_lease_seconds == 120
    monkeypatch.setenv("SEPGUARD_ENV_FILE", str(tmp_path / ".env"))
    assert Settings().max_files == 7
    assert Settings().worker_lease_seconds == 9


# 14. API docs from the project itself --------------------------------------------------------------


def test_api_docs_are_served_by_the_service_under_its_csp(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert sources and all(s.startswith("/") for s in sources), sources  # no CDN
    assert "<script>" not in r.text  # no inline script for the policy to forbid
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200 and asset.content, source
    assert client.get("/docs/static/../../core.py").status_code == 404
