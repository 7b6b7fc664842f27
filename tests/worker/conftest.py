"""Fixtures for the worker tests: jobs made as the API makes them (tests/app/jobs/conftest.py),
and ``drain`` to run what the pipeline queued."""

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.app.jobs.conftest import make_job, queued, queued_messages
from worker.main import celery_app

__all__ = ["make_job", "queued"]  # fixtures shared with the job tests


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
