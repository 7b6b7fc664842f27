"""Fixtures for the worker tests (``data_dir`` comes from tests/conftest.py): helpers to create
jobs and run what the pipeline queued."""

import base64
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.core.db import session_scope
from app.db_models import Job, Owner, new_job_id
from app.storage import job_dir
from tests.worker.helpers import job_params, write_sample_zip
from worker.celery_app import celery_app


@pytest.fixture
def make_job(data_dir: Path) -> Callable[..., str]:
    """Create a queued job with an uploaded sample dataset, as the API does."""

    def make(n: int = 32, classes: int = 4, **overrides: Any) -> str:
        job_id = new_job_id()
        write_sample_zip(job_dir(job_id).upload(), n, classes)
        with session_scope() as s:
            owner = s.query(Owner).filter_by(name="tester").first()
            if owner is None:
                owner = Owner(name="tester")
                s.add(owner)
                s.flush()
            s.add(Job(id=job_id, owner_id=owner.id, status="queued", params=job_params(**overrides)))
        return job_id

    return make


def queued_messages(data_dir: Path) -> list[tuple[int, str, list[Any]]]:
    """(row id, task name, args) of every message waiting in the SQLite broker, oldest first."""
    path = data_dir / "broker.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, payload FROM kombu_message WHERE visible = 1 ORDER BY id").fetchall()
    out = []
    for row_id, payload in rows:
        msg = json.loads(payload)
        raw = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            raw = base64.b64decode(raw)
        body = json.loads(raw)
        out.append((row_id, msg["headers"]["task"], list(body[0])))
    return out


def run_queued(data_dir: Path, count: int | None = None) -> list[tuple[str, list[Any], str]]:
    """Run queued tasks in this process, oldest first (a worker without Celery's machinery),
    ``count`` of them or until the queue is empty: returns (task name, args, outcome) for each."""
    ran: list[tuple[str, list[Any], str]] = []
    while count is None or len(ran) < count:
        messages = queued_messages(data_dir)
        if not messages:
            return ran
        row_id, name, args = messages[0]
        with sqlite3.connect(data_dir / "broker.sqlite") as db:
            db.execute("DELETE FROM kombu_message WHERE id = ?", (row_id,))
        ran.append((name, args, celery_app.tasks[name].run(*args)))
        if len(ran) > 200:
            raise AssertionError("the pipeline did not settle")
    return ran


@pytest.fixture
def drain(data_dir: Path) -> Callable[..., list[tuple[str, list[Any], str]]]:
    """``drain()`` runs every queued task (and those they queue); ``drain(n)`` runs n."""
    return lambda count=None: run_queued(data_dir, count)


@pytest.fixture
def queued(data_dir: Path) -> Callable[[], list[tuple[int, str, list[Any]]]]:
    return lambda: queued_messages(data_dir)
