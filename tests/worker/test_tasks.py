"""The stage tasks called directly, following exactly what the pipeline queues."""

import json
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.db import session_scope
from app.db_models import Job, JobShard, JobStage
from app.jobs import state
from app.jobs.dispatch import submit_job
from app.jobs.plan import plan_shards
from app.storage import job_dir
from engine import stages
from engine.config import ProtectConfig
from tests.worker.helpers import check_protected_zip
from worker import runner, tasks
from worker.runner import StageContext

Drain = Callable[..., list[tuple[str, list[Any], str]]]


def job_row(job_id: str) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


def test_pipeline_runs_every_stage_once_and_shards_fan_in(
    make_job: Callable[..., str], drain: Drain, queued: Callable[[], list[Any]]
) -> None:
    job_id = make_job(n=40)
    assert submit_job(job_id) == f"{job_id}-ingest"

    ran = drain(2)  # ingest, train
    assert [(name, outcome) for name, _, outcome in ran] == [("sepguard.ingest", "done"), ("sepguard.train", "done")]
    checkpoints = job_dir(job_id).checkpoints
    mtime = checkpoints.stat().st_mtime_ns
    # A redelivered stage is skipped: no new work, no second "next stage".
    assert tasks.train_task.run(job_id) == "skipped"
    assert checkpoints.stat().st_mtime_ns == mtime
    assert [name for _, name, _ in queued()] == ["sepguard.means"]

    ran += drain()
    assert [name for name, _, _ in ran] == [
        "sepguard.ingest",
        "sepguard.train",
        "sepguard.means",
        "sepguard.craft_shard",
        "sepguard.craft_shard",
        "sepguard.craft_shard",
        "sepguard.package",
        "sepguard.finalize",
    ]
    assert all(outcome == "done" for _, _, outcome in ran)
    assert sorted(args[1] for name, args, _ in ran if name == "sepguard.craft_shard") == [0, 1, 2]

    job = job_row(job_id)
    assert job.status == "succeeded" and job.progress == 1.0 and job.error is None
    assert job.dataset_summary["num_images"] == 40
    with session_scope() as s:
        stages = {r.name: r.status for r in s.query(JobStage).filter_by(job_id=job_id)}
        shards = [
            (r.start, r.stop, r.status) for r in s.query(JobShard).filter_by(job_id=job_id).order_by(JobShard.index)
        ]
    assert stages == dict.fromkeys(["ingest", "train", "means", "craft", "package"], "done")
    assert shards == [(0, 16, "done"), (16, 32, "done"), (32, 40, "done")]
    report = check_protected_zip(job_dir(job_id).upload(), job_dir(job_id).result, job.params["eps"])
    assert report["job"]["id"] == job_id
    # a job whose parameters leave R to the data (not sent through the API): settled from the index
    assert (report["resolution"], report["resolution_reason"]) == (32, "median short side 32 px (CIFAR-size images)")
    assert tasks.craft_shard_task.run(job_id, 1) == "stopped"  # late duplicates of a finished job do nothing


def test_a_bad_dataset_fails_the_job_with_the_file_named(
    make_job: Callable[..., str], drain: Drain, queued: Callable[[], list[Any]]
) -> None:
    job_id = make_job(n=8, classes=2)
    with zipfile.ZipFile(job_dir(job_id).upload(), "a") as z:
        z.writestr("cat/broken.png", b"this is not an image")
    submit_job(job_id)
    assert drain() == [("sepguard.ingest", [job_id], "failed")]
    job = job_row(job_id)
    assert job.status == "failed" and "broken.png" in (job.error or "")
    assert queued() == []


def test_an_exception_fails_the_job_with_its_text(
    make_job: Callable[..., str], queued: Callable[[], list[Any]]
) -> None:
    job_id = make_job()

    def work(ctx: StageContext) -> None:
        raise RuntimeError("the GPU caught fire")

    assert runner.run_stage(job_id, "ingest", work) == "failed"
    job = job_row(job_id)
    assert job.status == "failed" and job.error == "RuntimeError: the GPU caught fire"
    with session_scope() as s:
        assert s.query(JobStage).filter_by(job_id=job_id, name="ingest").one().status == "failed"
    assert queued() == []


def test_a_shard_that_keeps_killing_its_worker_fails_the_job(make_job: Callable[..., str]) -> None:
    job_id = make_job()
    state.start_job(job_id)
    state.ensure_stage_rows(job_id, ["ingest", "train", "means", "craft", "package"])
    state.create_shards(job_id, [(0, 16), (16, 32)])
    with session_scope() as s:  # three earlier deliveries died inside this shard
        s.query(JobShard).filter_by(job_id=job_id, index=1).update({"attempts": 3})
    ran: list[int] = []
    assert runner.run_shard(job_id, 1, lambda ctx, start, stop: ran.append(start)) == "failed"
    assert ran == []
    job = job_row(job_id)
    assert job.status == "failed" and "crafting images 16-32 was interrupted 3 times" in job.error


def test_cancel_inside_a_stage_stops_it_and_removes_partial_files(make_job: Callable[..., str]) -> None:
    job_id = make_job()
    (job_dir(job_id).working).write_bytes(b"partial")
    calls = 0

    def work(ctx: StageContext) -> None:
        nonlocal calls
        assert state.request_cancel(ctx.job_id) == "requested"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            calls += 1
            ctx.progress("train", calls, 10_000)
            time.sleep(0.01)
        raise AssertionError("the cancel was not noticed")

    assert runner.run_stage(job_id, "train", work) == "cancelled"
    job = job_row(job_id)
    assert job.status == "cancelled" and job.finished_at is not None
    assert not (job_dir(job_id).working).exists()
    assert (job_dir(job_id).upload()).exists()


def test_a_cancelled_job_runs_no_further_stage(make_job: Callable[..., str], drain: Drain) -> None:
    job_id = make_job(n=8, classes=2)
    submit_job(job_id)
    assert drain(1) == [("sepguard.ingest", [job_id], "done")]
    assert state.request_cancel(job_id) == "requested"
    assert drain() == [("sepguard.train", [job_id], "cancelled")]
    assert job_row(job_id).status == "cancelled"
    assert sorted(os.listdir(job_dir(job_id).root)) == ["index.json", "upload.zip"]


def test_unrequested_evaluation_is_skipped(make_job: Callable[..., str]) -> None:
    job_id = make_job()
    assert tasks.evaluate_task.run(job_id) == "skipped"
    assert job_row(job_id).status == "queued"


def test_missing_job(data_dir: Path) -> None:
    assert runner.run_stage("e" * 32, "train", lambda ctx: None) == "missing"
    assert tasks.finalize_task.run("e" * 32) == "missing"


def test_measured_protection_is_stored_and_reported(make_job: Callable[..., str], drain: Drain) -> None:
    job_id = make_job(n=32, measure=True, eval_epochs=1, shard_size=32, craft_batch=32)
    submit_job(job_id)
    ran = drain()
    assert [name for name, _, _ in ran] == [
        "sepguard.ingest",
        "sepguard.train",
        "sepguard.means",
        "sepguard.craft_shard",
        "sepguard.evaluate",
        "sepguard.package",
        "sepguard.finalize",
    ]
    job = job_row(job_id)
    assert job.status == "succeeded", job.error
    assert job.metrics
    with zipfile.ZipFile(job_dir(job_id).result) as z:
        report = json.loads(z.read("report.json"))
    assert report["evaluation"] == job.metrics


def test_the_planned_shards_are_the_engines(make_job: Callable[..., str], drain: Drain) -> None:
    """Crafting is planned from the job's row, packaging from its index: the ranges must agree."""
    job_id = make_job(n=40, classes=4)
    submit_job(job_id)
    assert drain(1) == [("sepguard.ingest", [job_id], "done")]
    job = job_row(job_id)
    for shard_size, craft_batch in ((16, 16), (24, 8), (40, 16), (8, 16), (512, 256)):
        params = {**job.params, "shard_size": shard_size, "craft_batch": craft_batch}
        expected = stages.plan_shards(job_dir(job_id), ProtectConfig.from_dict(params))
        assert plan_shards(params, job.dataset_summary["num_images"]) == expected
