"""Fixtures for the job tests (``data_dir`` comes from tests/conftest.py): create jobs as the API
does, and read what was sent to the embedded SQLite broker. The worker tests use them too."""

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


@pytest.fixture
def queued(data_dir: Path) -> Callable[[], list[tuple[int, str, list[Any]]]]:
    return lambda: queued_messages(data_dir)
