"""Throttled progress, ETA, and stopping at the next callback after a cancel request."""

import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from app.core.db import session_scope
from app.db_models import Job, JobStage, utcnow
from app.jobs import state
from worker.stage_progress import JobCancelled, JobStopped, StageProgress, StopFlag, estimate_eta, heartbeat


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def running(make_job: Callable[..., str], stage: str = "train") -> str:
    job_id = make_job()
    state.start_job(job_id)
    state.ensure_stage_rows(job_id, [stage])
    return job_id


def test_eta_from_the_average_rate() -> None:
    start = utcnow() - timedelta(seconds=100)
    assert estimate_eta(start, 0.25, now=start + timedelta(seconds=100)) == pytest.approx(300.0)
    assert estimate_eta(start, 0.001) is None
    assert estimate_eta(None, 0.5) is None
    assert estimate_eta(utcnow(), 0.5) is None  # too early to tell


def test_writes_are_throttled_and_weighted(make_job: Callable[..., str]) -> None:
    job_id = running(make_job)
    clock = FakeClock()
    progress = StageProgress(job_id, "train", 0.2, 0.5, utcnow(), StopFlag(), interval=1.0, clock=clock)
    for i in range(1, 101):
        clock.now = i * 0.05  # 100 callbacks over 5 seconds
        progress("train", i, 100)
    assert 4 <= progress.writes <= 6
    with session_scope() as s:
        job = s.get(Job, job_id)
        stage = s.query(JobStage).filter_by(job_id=job_id, name="train").one()
        assert 0.2 < job.progress <= 0.7
        assert stage.progress > 0.8


def test_shard_progress_counts_finished_shards() -> None:
    progress = StageProgress("x" * 32, "craft", 0.5, 0.4, None, StopFlag(), 1.0, offset=32, span=16, total=64)
    assert progress.stage_fraction(0, 16) == pytest.approx(0.5)
    assert progress.stage_fraction(8, 16) == pytest.approx(0.625)
    assert progress.stage_fraction(16, 16) == pytest.approx(0.75)


def test_cancel_request_stops_at_the_next_write(make_job: Callable[..., str]) -> None:
    job_id = running(make_job)
    clock = FakeClock()
    flag = StopFlag()
    progress = StageProgress(job_id, "train", 0.0, 1.0, None, flag, interval=1.0, clock=clock)
    progress("train", 1, 10)
    state.request_cancel(job_id)
    clock.now = 2.0
    with pytest.raises(JobCancelled):
        progress("train", 2, 10)
    with pytest.raises(JobCancelled):
        progress("train", 3, 10)  # every later callback raises at once


def test_a_job_that_failed_elsewhere_stops_too(make_job: Callable[..., str]) -> None:
    job_id = running(make_job)
    flag = StopFlag()
    progress = StageProgress(job_id, "train", 0.0, 1.0, None, flag, interval=0.0)
    state.fail_job(job_id, "train", "a shard failed")
    with pytest.raises(JobStopped) as err:
        progress("train", 1, 2)
    assert not isinstance(err.value, JobCancelled)


def test_heartbeat_keeps_the_lease_and_sees_the_cancel(make_job: Callable[..., str]) -> None:
    job_id = running(make_job)
    old = utcnow() - timedelta(hours=1)
    with session_scope() as s:
        s.query(Job).filter_by(id=job_id).update({"updated_at": old})

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    def beat() -> object:
        with session_scope() as s:
            return s.get(Job, job_id).updated_at

    flag = StopFlag()
    with heartbeat(job_id, flag, interval=0.05):
        wait_for(lambda: beat() > old)
        assert beat() > old  # the lease is fresh again
        assert state.request_cancel(job_id) == "requested"
        wait_for(lambda: flag.is_set)
    assert flag.is_set and flag.cancelled
    with pytest.raises(JobCancelled):
        flag.check()
