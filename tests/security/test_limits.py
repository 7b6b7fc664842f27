"""Limits per owner (issue item 11): bounded job parameters, a cap on queued + running jobs, and
jobs that cannot fit a worker's memory refused before they start."""

import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.app.helpers import assert_nothing_left, bearer, dataset_zip, job_count
from tests.conftest import reload_settings

JOBS = "/api/v1/jobs"


def post(client: TestClient, token: str, data: bytes | None = None, **fields: str):
    files = {"dataset": ("d.zip", data or dataset_zip(), "application/zip")}
    return client.post(JOBS, headers=bearer(token), files=files, data=fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", "1000"), ("steps", "1000"), ("inner_steps", "1000"), ("checkpoints", "200"), ("resolution", "1024")],
)
def test_parameters_beyond_what_the_presets_need_are_422(
    client: TestClient, tokens: dict[str, str], data_dir: Path, field: str, value: str
) -> None:
    r = post(client, tokens["alice"], **{field: value})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(field) and "less than or equal" in r.json()["detail"]
    assert_nothing_left(data_dir)


def test_the_paper_preset_fits_the_bounds(client: TestClient, tokens: dict[str, str]) -> None:
    r = post(client, tokens["alice"], preset="paper", epochs="120", steps="30", inner_steps="16", checkpoints="15")
    assert r.status_code == 202, r.text


def test_queued_and_running_jobs_are_capped_per_owner(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEPGUARD_MAX_ACTIVE_JOBS", "2")
    reload_settings()
    ids = [post(client, tokens["alice"]).json()["id"] for _ in range(2)]
    r = post(client, tokens["alice"])
    assert r.status_code == 429 and "2 jobs queued or running" in r.json()["detail"]
    assert job_count() == 2
    assert post(client, tokens["bob"]).status_code == 202  # another owner is not held back
    assert client.post(f"{JOBS}/{ids[0]}/cancel", headers=bearer(tokens["alice"])).status_code == 200
    assert post(client, tokens["alice"]).status_code == 202  # a cancelled job frees its place


def many_images_zip(count: int) -> bytes:
    buf = io.BytesIO()
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(png, "PNG")
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"c{i % 2}/{i}.png", png.getvalue())
    return buf.getvalue()


def test_a_job_that_cannot_fit_a_worker_is_refused_before_it_starts(
    client: TestClient, tokens: dict[str, str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEPGUARD_WORKER_MEMORY_BYTES", str(int(1.2 * 1024**3)))
    reload_settings()
    data = many_images_zip(400)  # 400 x 3 x 256 x 256 x 7 bytes: about 0.5 GiB of working set
    r = post(client, tokens["alice"], data, resolution="256")
    assert r.status_code == 400, r.text
    assert "worker memory" in r.json()["detail"] and "1.2 GiB" in r.json()["detail"]
    assert_nothing_left(data_dir)
    assert post(client, tokens["alice"], data, resolution="32").status_code == 202


def test_the_memory_estimate_uses_the_resolution_chosen_from_the_upload(
    client: TestClient, tokens: dict[str, str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEPGUARD_WORKER_MEMORY_BYTES", str(int(1.2 * 1024**3)))
    reload_settings()
    png = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 20, 30)).save(png, "PNG")
    photos = io.BytesIO()
    with zipfile.ZipFile(photos, "w") as zf:
        for i in range(400):
            zf.writestr(f"c{i % 2}/{i}.png", png.getvalue())
    # paper's auto R on 300-px photos is its cap, 224: 400 x 3 x 224 x 224 x 7 bytes, about 0.4 GiB
    r = post(client, tokens["alice"], photos.getvalue(), preset="paper")
    assert r.status_code == 400, r.text
    assert "worker memory" in r.json()["detail"] and "lower the resolution" in r.json()["detail"]
    assert_nothing_left(data_dir)
    r = post(client, tokens["alice"], photos.getvalue(), preset="paper", resolution="32")
    assert r.status_code == 202 and r.json()["params"]["resolution"] == 32
