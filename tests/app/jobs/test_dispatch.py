"""Sending a job's tasks: submitting and cancelling (what the API calls), and the next stage."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.core.db import session_scope
from app.db_models import Job
from app.jobs import state
from app.jobs.dispatch import BrokerUnavailable, cancel_job, dispatch_next, submit_job
from app.storage import job_dir
from tests.conftest import reload_settings as reload
from tests.worker.helpers import at_crafting


def status(job_id: str) -> str:
    with session_scope() as s:
        return s.get(Job, job_id).status


def test_submit_queues_the_first_stage(make_job: Callable[..., str], queued: Callable[[], list[Any]]) -> None:
    job_id = make_job()
    assert submit_job(job_id) == f"{job_id}-ingest"
    assert [(name, args) for _, name, args in queued()] == [("sepguard.ingest", [job_id])]


def test_submit_without_a_broker_raises(make_job: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = make_job()
    monkeypatch.setenv("SEPGUARD_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    monkeypatch.setenv("SEPGUARD_BROKER_CHECK_TIMEOUT", "0.5")
    reload()
    with pytest.raises(BrokerUnavailable):
        submit_job(job_id)


def test_cancel_a_queued_job_ends_it_at_once(make_job: Callable[..., str], data_dir: Path) -> None:
    job_id = make_job()
    (job_dir(job_id).checkpoints).write_bytes(b"partial")
    cancel_job(job_id)
    assert status(job_id) == "cancelled"
    assert not (job_dir(job_id).checkpoints).exists()
    cancel_job(job_id)  # again: nothing happens
    assert status(job_id) == "cancelled"


def test_cancel_a_running_job_asks_its_tasks(make_job: Callable[..., str]) -> None:
    job_id = make_job()
    state.start_job(job_id)
    (job_dir(job_id).working).write_bytes(b"in use")
    cancel_job(job_id)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.status == "running" and job.cancel_requested
    assert (job_dir(job_id).working).exists()  # the running task removes it when it stops


def test_dispatch_sends_only_unfinished_shards(make_job: Callable[..., str], queued: Callable[[], list[Any]]) -> None:
    job_id = make_job()
    at_crafting(job_id)
    state.claim_shard(job_id, 1, 60, 3)
    state.finish_shard(job_id, 1)
    assert dispatch_next(job_id) == [f"{job_id}-craft-0", f"{job_id}-craft-2"]
    assert [args for _, _, args in queued()] == [[job_id, 0], [job_id, 2]]


def test_dispatch_after_the_last_stage_sends_the_finaliser(make_job: Callable[..., str]) -> None:
    job_id = make_job()
    state.start_job(job_id)
    stages = ["ingest", "train", "means", "craft", "package"]
    state.ensure_stage_rows(job_id, stages)
    for stage in stages:
        state.finish_stage(job_id, stage)
    assert dispatch_next(job_id) == [f"{job_id}-finalize"]
    state.finish_job(job_id)
    assert dispatch_next(job_id) == []


def test_the_shards_are_planned_when_crafting_is_reached(
    make_job: Callable[..., str], queued: Callable[[], list[Any]]
) -> None:
    job_id = make_job(shard_size=16, craft_batch=16)
    state.start_job(job_id)
    state.ensure_stage_rows(job_id, ["ingest", "train", "means", "craft", "package"])
    state.finish_stage(job_id, "ingest", {"dataset_summary": {"num_images": 40}})  # the usable images
    state.finish_stage(job_id, "train")
    assert dispatch_next(job_id) == [f"{job_id}-means"]
    assert state.shard_images(job_id) == (0, 0)  # not planned yet
    state.finish_stage(job_id, "means")
    assert dispatch_next(job_id) == [f"{job_id}-craft-0", f"{job_id}-craft-1", f"{job_id}-craft-2"]
    assert state.shard_images(job_id) == (0, 40)
    assert dispatch_next(job_id) == [f"{job_id}-craft-0", f"{job_id}-craft-1", f"{job_id}-craft-2"]  # same plan
    assert [args for _, _, args in queued()][1:4] == [[job_id, 0], [job_id, 1], [job_id, 2]]


def test_a_job_without_images_to_craft_fails(make_job: Callable[..., str]) -> None:
    job_id = make_job()
    state.start_job(job_id)
    state.ensure_stage_rows(job_id, ["ingest", "train", "means", "craft", "package"])
    state.finish_stage(job_id, "ingest", {"dataset_summary": {"num_images": 0}})
    state.finish_stage(job_id, "train")
    state.finish_stage(job_id, "means")
    assert dispatch_next(job_id) == []
    assert status(job_id) == "failed"
