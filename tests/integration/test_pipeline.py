"""The job pipeline end to end: API and Celery worker processes, real broker and database."""

import os
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db_models import JobShard
from tests.integration.conftest import Stack
from tests.worker.helpers import check_protected_zip, write_sample_zip

pytestmark = pytest.mark.integration

PARTIAL = ("working.npz", "checkpoints.pt", "means.pt", "shards", "protected.zip", "previews")


def shards(stack: Stack, job_id: str) -> dict[int, tuple[str, object]]:
    with stack.session() as s:
        rows = s.scalars(select(JobShard).where(JobShard.job_id == job_id)).all()
        return {r.index: (r.status, r.finished_at) for r in rows}


def check_result(stack: Stack, job_id: str, dataset: Path) -> None:
    job = stack.job(job_id)
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    report = check_protected_zip(dataset, stack.download(job_id), job["params"]["eps"])
    assert report["job"]["id"] == job_id


def test_protect_a_dataset_with_postgres_and_redis(production: Stack, tmp_path: Path) -> None:
    dataset = tmp_path / "cifar.zip"
    write_sample_zip(dataset, n=50, classes=5)
    production.start_api()
    production.start_worker(concurrency=2)
    job_id = production.submit(dataset)

    seen = production.wait(job_id, lambda j: j["status"] == "running" and j["stage"] in ("train", "craft"))
    assert seen["eta_seconds"] is None or seen["eta_seconds"] >= 0
    production.wait_final(job_id)
    check_result(production, job_id, dataset)
    assert len(shards(production, job_id)) == 4  # 50 images in shards of 16
    assert all(status == "done" for status, _ in shards(production, job_id).values())


def test_protect_a_dataset_embedded(embedded: Stack, tmp_path: Path) -> None:
    dataset = tmp_path / "cifar.zip"
    write_sample_zip(dataset, n=40, classes=4)
    embedded.start_api(with_worker=True)  # `sepguard serve`: SQLite database and broker, one worker
    job_id = embedded.submit(dataset)
    embedded.wait_final(job_id)
    check_result(embedded, job_id, dataset)


def test_killed_worker_resumes_without_redoing_finished_shards(production: Stack, tmp_path: Path) -> None:
    dataset = tmp_path / "cifar.zip"
    write_sample_zip(dataset, n=96, classes=4)
    production.start_api()
    worker = production.start_worker(concurrency=1)
    job_id = production.submit(dataset, steps="4", inner_steps="4")

    production.wait(
        job_id,
        lambda j: (
            sum(st == "done" for st, _ in shards(production, job_id).values()) >= 1
            and any(st != "done" for st, _ in shards(production, job_id).values())
        ),
    )
    production.kill(worker)  # the whole worker dies mid-craft, nothing acknowledged
    before = {i: at for i, (st, at) in shards(production, job_id).items() if st == "done"}
    assert 0 < len(before) < 6
    timings = Path(production.env["SEPGUARD_DATA_DIR"]) / "jobs" / job_id / "timings"
    stamps = {p.name: p.stat().st_mtime_ns for p in timings.glob("craft-*.json")}

    production.start_worker(concurrency=1)
    production.wait_final(job_id)
    check_result(production, job_id, dataset)
    after = shards(production, job_id)
    assert all(st == "done" for st, _ in after.values())
    assert {i: after[i][1] for i in before} == before  # finished shards were not redone
    assert {p.name: p.stat().st_mtime_ns for p in timings.glob("craft-*.json") if p.name in stamps} == stamps


def test_api_restart_mid_job_loses_nothing(production: Stack, tmp_path: Path) -> None:
    dataset = tmp_path / "cifar.zip"
    write_sample_zip(dataset, n=40, classes=4)
    api = production.start_api()
    production.start_worker(concurrency=2)
    job_id = production.submit(dataset)
    production.wait(job_id, lambda j: j["status"] == "running" and j["stage"] in ("train", "means", "craft"))

    production.stop(api)
    production.start_api()
    production.wait_final(job_id)
    check_result(production, job_id, dataset)


def test_cancel_a_running_job_while_another_continues(production: Stack, tmp_path: Path) -> None:
    dataset = tmp_path / "cifar.zip"
    write_sample_zip(dataset, n=40, classes=4)
    production.start_api()
    production.start_worker(concurrency=2)
    doomed = production.submit(dataset, epochs="30")  # a long training run, cancelled midway
    other = production.submit(dataset)
    production.wait(doomed, lambda j: j["status"] == "running" and j["stage"] == "train" and j["progress"] > 0.05)

    r = production.request("POST", f"/jobs/{doomed}/cancel")
    assert r.status_code == 200, r.text
    job = production.wait_final(doomed, timeout=60)
    assert job["status"] == "cancelled"
    folder = Path(production.env["SEPGUARD_DATA_DIR"]) / "jobs" / doomed
    left = set(os.listdir(folder)) if folder.exists() else set()
    assert not left & set(PARTIAL), left

    production.wait_final(other)
    check_result(production, other, dataset)
    with zipfile.ZipFile(dataset) as z:
        assert len(z.namelist()) == 40
