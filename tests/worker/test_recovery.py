"""Resuming jobs whose worker died: the lease sweep."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from app.core.db import session_scope
from app.db_models import Job, JobShard, utcnow
from app.jobs import state
from tests.conftest import reload_settings as reload
from tests.worker.helpers import at_crafting
from worker import recovery


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch, data_dir: object) -> None:
    monkeypatch.setenv("SEPGUARD_WORKER_LEASE_SECONDS", "30")
    reload()


def age(job_id: str, seconds: float) -> None:
    with session_scope() as s:
        s.query(Job).filter_by(id=job_id).update({"updated_at": utcnow() - timedelta(seconds=seconds)})


def crafting(make_job: Callable[..., str]) -> str:
    """A job whose worker died while crafting shard 1, after shard 0 was done."""
    job_id = make_job()
    at_crafting(job_id)
    for i in (0, 1):
        state.claim_shard(job_id, i, 30, 3)
    state.finish_shard(job_id, 0)
    return job_id


def test_a_dead_workers_shard_is_sent_again(make_job: Callable[..., str], queued: Callable[[], list[Any]]) -> None:
    job_id = crafting(make_job)
    assert recovery.sweep_once() == []  # the heartbeat is fresh: someone is working on it
    age(job_id, 60)
    assert recovery.sweep_once() == [job_id]
    assert [args for _, _, args in queued()] == [[job_id, 1], [job_id, 2]]
    with session_scope() as s:
        shards = {r.index: (r.status, r.finished_at) for r in s.query(JobShard).filter_by(job_id=job_id)}
    assert shards[0][0] == "done" and shards[0][1] is not None
    assert shards[1][0] == "pending"
    assert recovery.sweep_once() == []  # adopted once


def test_a_job_waiting_in_the_queue_is_left_alone_until_long_silent(
    make_job: Callable[..., str], queued: Callable[[], list[Any]]
) -> None:
    job_id = make_job()
    age(job_id, 60)
    assert recovery.sweep_once() == []
    assert recovery.sweep_once(idle_after_seconds=30) == [job_id]
    assert [(name, args) for _, name, args in queued()] == [("sepguard.ingest", [job_id])]


def test_a_cancel_requested_orphan_is_cancelled(make_job: Callable[..., str], queued: Callable[[], list[Any]]) -> None:
    job_id = crafting(make_job)
    assert state.request_cancel(job_id) == "requested"
    age(job_id, 60)
    assert recovery.sweep_once() == [job_id]
    with session_scope() as s:
        assert s.get(Job, job_id).status == "cancelled"
    assert queued() == []
