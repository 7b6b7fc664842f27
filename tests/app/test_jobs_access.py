"""Reading, downloading, cancelling and deleting jobs: only the owner may, and states are enforced."""

import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app import storage
from app.core.db import session_scope
from app.core.security import authenticate
from app.db_models import Job, JobShard, JobStage, utcnow
from tests.app.helpers import bearer, job_count, png_bytes, zip_bytes

PREVIEW = {
    "index": 0,
    "path": "cat/0.png",
    "class": "cat",
    "width": 8,
    "height": 8,
    "original": "0-before.png",
    "protected": "0-after.png",
    "delta": "0-delta.png",
    "psnr": 41.2,
    "ssim": 0.99,
}


def make_job(token: str, status: str = "succeeded", files: bool = True) -> str:
    """A job of ``token``'s owner, with the files a finished run leaves."""
    with session_scope() as session:
        owner = authenticate(session, token)
        assert owner is not None
        job = Job(owner_id=owner.id, status=status, params={"preset": "fast", "eps": 8.0}, progress=1.0)
        job.stages = [JobStage(name="train", status="done", progress=1.0)]
        job.shards = [JobShard(index=0, start=0, stop=6, status="done")]
        if status == "succeeded":
            job.metrics = {"victim_accuracy": 0.2}
            job.finished_at = utcnow()
        session.add(job)
        session.flush()
        job_id = job.id
    if files:
        folder = storage.job_dir(job_id)
        folder.root.mkdir(parents=True)
        folder.upload().write_bytes(b"upload")
        folder.index.write_text("{}")
        folder.shards.mkdir()
        folder.shard(0, 6).write_bytes(b"delta")
        folder.result.write_bytes(zip_bytes({"cat/0.png": png_bytes()}))
        folder.previews.mkdir()
        folder.preview("0-before.png").write_bytes(png_bytes())
        folder.previews_index.write_text(json.dumps([PREVIEW]))
    return job_id


@pytest.fixture
def alice_job(tokens: dict[str, str]) -> str:
    return make_job(tokens["alice"])


def url(job_id: str, tail: str = "") -> str:
    return f"/api/v1/jobs/{job_id}{tail}"


@pytest.mark.parametrize(
    ("method", "tail"),
    [
        ("GET", ""),
        ("GET", "/download"),
        ("GET", "/previews"),
        ("GET", "/preview/0-before.png"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    ],
)
def test_another_owners_job_is_404(
    client: TestClient, tokens: dict[str, str], alice_job: str, method: str, tail: str
) -> None:
    r = client.request(method, url(alice_job, tail), headers=bearer(tokens["bob"]))
    assert r.status_code == 404
    assert r.json() == {"detail": "job not found"}
    assert storage.job_dir(alice_job).result.is_file()
    assert client.get(url(alice_job), headers=bearer(tokens["alice"])).json()["status"] == "succeeded"


def test_unknown_job_is_404(client: TestClient, tokens: dict[str, str]) -> None:
    for job_id in ("0" * 32, "nope", "..%2F..%2Fetc"):
        assert client.get(url(job_id), headers=bearer(tokens["alice"])).status_code == 404


def test_list_shows_only_own_jobs_newest_first_paginated(client: TestClient, tokens: dict[str, str]) -> None:
    mine = [make_job(tokens["alice"], files=False) for _ in range(3)]
    make_job(tokens["bob"], files=False)
    r = client.get("/api/v1/jobs", headers=bearer(tokens["alice"]))
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 3
    assert [j["id"] for j in body["items"]] == mine[::-1]
    page = client.get("/api/v1/jobs", params={"limit": 2, "offset": 2}, headers=bearer(tokens["alice"])).json()
    assert [j["id"] for j in page["items"]] == [mine[0]] and page["total"] == 3
    filtered = client.get("/api/v1/jobs", params={"status": "running"}, headers=bearer(tokens["alice"])).json()
    assert filtered["total"] == 0
    assert client.get("/api/v1/jobs", params={"limit": 0}, headers=bearer(tokens["alice"])).status_code == 422


def test_job_view(client: TestClient, tokens: dict[str, str], alice_job: str) -> None:
    body = client.get(url(alice_job), headers=bearer(tokens["alice"])).json()
    assert body["id"] == alice_job
    assert body["download_url"] == url(alice_job, "/download")
    assert body["preview_url"] == url(alice_job, "/previews")
    assert body["stages"][0]["name"] == "train"
    assert body["created_at"].endswith(("Z", "+00:00"))


def test_download_streams_the_zip_with_range_support(
    client: TestClient, tokens: dict[str, str], alice_job: str
) -> None:
    expected = storage.job_dir(alice_job).result.read_bytes()
    r = client.get(url(alice_job, "/download"), headers=bearer(tokens["alice"]))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"]
    assert r.content == expected
    assert zipfile.ZipFile(storage.job_dir(alice_job).result).namelist() == ["cat/0.png"]
    part = client.get(url(alice_job, "/download"), headers=bearer(tokens["alice"]) | {"Range": "bytes=0-9"})
    assert part.status_code == 206
    assert part.content == expected[:10]


@pytest.mark.parametrize("status", ["queued", "running", "failed", "cancelled"])
def test_download_before_success_is_409(client: TestClient, tokens: dict[str, str], status: str) -> None:
    job_id = make_job(tokens["alice"], status=status)
    r = client.get(url(job_id, "/download"), headers=bearer(tokens["alice"]))
    assert r.status_code == 409
    assert status in r.json()["detail"]
    assert client.get(url(job_id), headers=bearer(tokens["alice"])).json()["download_url"] is None


def test_previews(client: TestClient, tokens: dict[str, str], alice_job: str) -> None:
    body = client.get(url(alice_job, "/previews"), headers=bearer(tokens["alice"])).json()
    assert body["items"] == [PREVIEW]
    assert body["urls"] == {"0-before.png": url(alice_job, "/preview/0-before.png")}
    r = client.get(body["urls"]["0-before.png"], headers=bearer(tokens["alice"]))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == png_bytes()


@pytest.mark.parametrize(
    "name", ["..%2Fupload.zip", "..%2F..%2Fsepguard.sqlite", "previews.json", "x..png", "missing.png"]
)
def test_preview_names_cannot_escape(client: TestClient, tokens: dict[str, str], alice_job: str, name: str) -> None:
    r = client.get(url(alice_job, f"/preview/{name}"), headers=bearer(tokens["alice"]))
    assert r.status_code in (400, 404)
    assert "detail" in r.json()


def test_previews_empty_until_written(client: TestClient, tokens: dict[str, str]) -> None:
    job_id = make_job(tokens["alice"], status="running", files=False)
    body = client.get(url(job_id, "/previews"), headers=bearer(tokens["alice"])).json()
    assert body == {"items": [], "urls": {}}
    assert client.get(url(job_id), headers=bearer(tokens["alice"])).json()["preview_url"] is None


def make_stale(job_id: str) -> None:
    """Make a running job look abandoned: its workers' heartbeat is an hour old."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(hours=1)))


@pytest.mark.parametrize("status", ["queued", "stale running"])
def test_cancel_ends_a_waiting_job_and_removes_partial_files(
    client: TestClient, tokens: dict[str, str], status: str
) -> None:
    job_id = make_job(tokens["alice"], status=status.split()[-1])
    if status == "stale running":
        make_stale(job_id)
    r = client.post(url(job_id, "/cancel"), headers=bearer(tokens["alice"]))
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["cancel_requested"] is True
    assert r.json()["finished_at"] is not None
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.cancel_requested and job.status == "cancelled"
    assert not storage.job_dir(job_id).shards.exists()
    assert not storage.job_dir(job_id).result.exists()
    assert storage.job_dir(job_id).upload().exists()
    again = client.post(url(job_id, "/cancel"), headers=bearer(tokens["alice"]))
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


def test_cancel_asks_a_running_job_to_stop(client: TestClient, tokens: dict[str, str]) -> None:
    job_id = make_job(tokens["alice"], status="running")
    r = client.post(url(job_id, "/cancel"), headers=bearer(tokens["alice"]))
    assert r.status_code == 200
    assert r.json()["cancel_requested"] is True
    assert r.json()["status"] == "running"  # its tasks notice the request and end it
    delete = client.delete(url(job_id), headers=bearer(tokens["alice"]))
    assert delete.status_code == 409 and "cancel" in delete.json()["detail"]


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_cancel_finished_job_is_409(client: TestClient, tokens: dict[str, str], status: str) -> None:
    job_id = make_job(tokens["alice"], status=status)
    r = client.post(url(job_id, "/cancel"), headers=bearer(tokens["alice"]))
    assert r.status_code == 409 and status in r.json()["detail"]


def test_delete_removes_rows_and_files(client: TestClient, tokens: dict[str, str], alice_job: str) -> None:
    r = client.delete(url(alice_job), headers=bearer(tokens["alice"]))
    assert r.status_code == 204 and r.content == b""
    assert not storage.job_dir(alice_job).root.exists()
    assert job_count() == 0
    with session_scope() as session:
        assert session.query(JobStage).count() == 0 and session.query(JobShard).count() == 0
    assert client.get(url(alice_job), headers=bearer(tokens["alice"])).status_code == 404


def test_delete_unfinished_job_is_409_until_cancelled(client: TestClient, tokens: dict[str, str]) -> None:
    job_id = make_job(tokens["alice"], status="queued")
    r = client.delete(url(job_id), headers=bearer(tokens["alice"]))
    assert r.status_code == 409 and "cancel" in r.json()["detail"]
    assert storage.job_dir(job_id).root.exists()
    assert client.post(url(job_id, "/cancel"), headers=bearer(tokens["alice"])).status_code == 200
    assert client.delete(url(job_id), headers=bearer(tokens["alice"])).status_code == 204
    assert not storage.job_dir(job_id).root.exists()


def test_job_dir_rejects_bad_ids(data_dir: Path) -> None:
    with pytest.raises(ValueError):
        storage.job_dir("../x")
    assert storage.job_dir("a" * 32).root == data_dir.resolve() / "jobs" / ("a" * 32)


def test_huge_offset_is_refused_not_a_crash(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/api/v1/jobs", params={"offset": 2**63}, headers=bearer(tokens["alice"]))
    assert r.status_code == 422 and r.json()["detail"].startswith("offset")
    r = client.get("/api/v1/jobs", params={"offset": 2**31 - 1}, headers=bearer(tokens["alice"]))
    assert r.status_code == 200 and r.json()["items"] == []
