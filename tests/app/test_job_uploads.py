"""POST /jobs: every bad upload is refused with a clear message and leaves nothing behind."""

import asyncio
import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app import storage
from app.core.db import session_scope
from app.db_models import Job
from engine.errors import LimitExceeded
from tests.app.helpers import assert_nothing_left, bearer, dataset_zip, job_count, png_bytes, zip_bytes
from tests.app.jobs.conftest import queued_messages
from tests.conftest import reload_settings

JOBS = "/api/v1/jobs"


def post(client: TestClient, token: str, data: bytes, filename: str = "data.zip", **fields: str):
    files = {"dataset": (filename, data, "application/octet-stream")}
    return client.post(JOBS, headers=bearer(token), files=files, data=fields)


def refused(r, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word.lower() in detail.lower(), detail
    return detail


def crafted_zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def noise_png(size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(buf, "PNG")
    return buf.getvalue()


def valid_entries() -> list[tuple[zipfile.ZipInfo | str, bytes]]:
    return [(f"{c}/{i}.png", png_bytes()) for c in ("cat", "dog") for i in range(2)]


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch, data_dir: Path):
    """Set service limits for one test."""

    def apply(**values: float) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"SEPGUARD_{name.upper()}", str(value))
        reload_settings()

    return apply


def test_valid_upload_is_queued(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    r = post(client, tokens["alice"], dataset_zip(), preset="fast", eps="4", seed="3", measure="true")
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["progress"] == 0
    assert job["download_url"] is None
    assert job["params"]["preset"] == "fast" and job["params"]["eps"] == 4.0 and job["params"]["seed"] == 3
    assert job["params"]["measure"] is True and job["params"]["method"] == "sep-fa-vr"
    assert job["dataset_summary"]["num_images"] == 6 and job["dataset_summary"]["num_classes"] == 2
    assert storage.job_dir(job["id"]).upload().is_file()
    # the index names the dataset relative to the job folder: workers may mount the data elsewhere
    assert json.loads(storage.job_dir(job["id"]).index.read_text())["root"] == "dataset"
    with session_scope() as session:
        row = session.get(Job, job["id"])
        assert row is not None and row.status == "queued"
    assert [(name, args) for _, name, args in queued_messages(data_dir)] == [("sepguard.ingest", [job["id"]])]
    listed = client.get(JOBS, headers=bearer(tokens["alice"])).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]


def test_tar_gz_upload_is_accepted(client: TestClient, tokens: dict[str, str]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for c in ("cat", "dog"):
            data = png_bytes()
            info = tarfile.TarInfo(f"{c}/0.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    r = post(client, tokens["alice"], buf.getvalue(), filename="data.tar.gz")
    assert r.status_code == 202, r.text
    assert storage.job_dir(r.json()["id"]).upload("data.tar.gz").name == "upload.tar.gz"
    assert storage.job_dir(r.json()["id"]).upload("data.tar.gz").is_file()


def test_shard_size_setting_reaches_the_params(client: TestClient, tokens: dict[str, str], limits) -> None:
    limits(shard_size=7)
    r = post(client, tokens["alice"], dataset_zip())
    assert r.status_code == 202 and r.json()["params"]["shard_size"] == 7


def test_the_working_resolution_is_chosen_from_the_upload_and_recorded(
    client: TestClient, tokens: dict[str, str]
) -> None:
    """The preset leaves R to the data: the API settles it from the upload and records it with its reason."""
    photos = zip_bytes({f"{c}/{i}.png": png_bytes((120, 90)) for c in ("cat", "dog") for i in range(2)})
    settled = {}
    for preset, resolution in (("paper", None), ("balanced", None), ("balanced", "64")):
        fields = {"preset": preset} | ({"resolution": resolution} if resolution else {})
        r = post(client, tokens["alice"], photos, **fields)
        assert r.status_code == 202, r.text
        params = r.json()["params"]
        settled[preset, resolution] = (params["resolution"], params["resolution_reason"], params["victim_resolutions"])
        with session_scope() as session:
            row = session.get(Job, r.json()["id"])
            assert row is not None and row.params["resolution"] == params["resolution"]
    assert settled == {
        ("paper", None): (80, "median short side 90 px, rounded down to a multiple of 16", [80]),
        ("balanced", None): (32, "median short side 90 px, capped at 32 px by the preset", [32, 64]),
        ("balanced", "64"): (64, "set by the user", [64]),  # an explicit resolution wins
    }


@pytest.mark.parametrize("resolution", ["0", "8", "15", "257"])
def test_a_resolution_outside_16_to_256_is_422(
    client: TestClient, tokens: dict[str, str], data_dir: Path, resolution: str
) -> None:
    refused(post(client, tokens["alice"], dataset_zip(), resolution=resolution), 422, "resolution")
    assert_nothing_left(data_dir)


def test_not_a_zip(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    detail = refused(post(client, tokens["alice"], b"hello, not an archive", filename="mydata.zip"), 400, "not a zip")
    assert "mydata.zip" in detail
    assert_nothing_left(data_dir)


def test_empty_zip(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    refused(post(client, tokens["alice"], zip_bytes({})), 400)
    assert_nothing_left(data_dir)


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png"])
def test_zip_slip(client: TestClient, tokens: dict[str, str], data_dir: Path, name: str) -> None:
    refused(post(client, tokens["alice"], crafted_zip([*valid_entries(), (name, png_bytes())])), 400, "evil.png")
    assert not (data_dir / "evil.png").exists() and not (data_dir / "jobs" / "evil.png").exists()
    assert_nothing_left(data_dir)


def test_absolute_path(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    info = zipfile.ZipInfo("placeholder")
    info.filename = "/tmp/evil.png"
    refused(post(client, tokens["alice"], crafted_zip([*valid_entries(), (info, png_bytes())])), 400, "evil.png")
    assert_nothing_left(data_dir)


def test_symlink_entry(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    link = zipfile.ZipInfo("cat/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    refused(post(client, tokens["alice"], crafted_zip([*valid_entries(), (link, b"/etc/passwd")])), 400, "link.png")
    assert_nothing_left(data_dir)


def test_zip_bomb_ratio(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    bomb = zip_bytes({"cat/0.png": png_bytes(), "dog/0.png": png_bytes(), "dog/blank.bmp": bytes(20 * 1024 * 1024)})
    refused(post(client, tokens["alice"], bomb), 413, "ratio")
    assert_nothing_left(data_dir)


def test_zip_bomb_total_size(client: TestClient, tokens: dict[str, str], data_dir: Path, limits) -> None:
    limits(max_uncompressed_bytes=20_000)
    files = {f"{c}/{i}.png": noise_png() for c in ("cat", "dog") for i in range(10)}  # about 60 kB
    refused(post(client, tokens["alice"], zip_bytes(files)), 413, "unpacks to more than")
    assert_nothing_left(data_dir)


def test_zip_bomb_file_count(client: TestClient, tokens: dict[str, str], data_dir: Path, limits) -> None:
    limits(max_files=5)
    files = {f"{c}/{i}.png": png_bytes() for c in ("cat", "dog") for i in range(5)}
    refused(post(client, tokens["alice"], zip_bytes(files)), 413, "5")
    assert_nothing_left(data_dir)


def test_upload_over_the_limit(client: TestClient, tokens: dict[str, str], data_dir: Path, limits) -> None:
    limits(max_upload_bytes=3000)
    big = dataset_zip(per_class=20)
    assert len(big) > 3000
    refused(post(client, tokens["alice"], big), 413, "3000")
    assert_nothing_left(data_dir)


def test_upload_far_over_the_limit_is_refused_from_its_length(
    client: TestClient, tokens: dict[str, str], data_dir: Path, limits
) -> None:
    limits(max_upload_bytes=1000)
    refused(post(client, tokens["alice"], bytes(3 * 1024 * 1024)), 413, "1000")
    assert_nothing_left(data_dir)


def test_one_class(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    refused(post(client, tokens["alice"], dataset_zip(classes=("cat",))), 400, "class")
    assert_nothing_left(data_dir)


def test_corrupt_image(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    bad = zip_bytes({"cat/0.png": png_bytes(), "dog/0.png": png_bytes(), "dog/broken.jpg": b"\xff\xd8\xff\xe0garbage"})
    refused(post(client, tokens["alice"], bad), 400, "dog/broken.jpg")
    assert_nothing_left(data_dir)


def test_corrupt_image_skipped_when_asked(client: TestClient, tokens: dict[str, str]) -> None:
    bad = zip_bytes({"cat/0.png": png_bytes(), "dog/0.png": png_bytes(), "dog/broken.jpg": b"\xff\xd8\xff\xe0garbage"})
    r = post(client, tokens["alice"], bad, skip_invalid="true")
    assert r.status_code == 202, r.text
    assert r.json()["dataset_summary"]["skipped"] == 1


def test_decompression_bomb_image(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, "PNG")  # 81 megapixels in a few kilobytes
    bomb = zip_bytes({"cat/0.png": png_bytes(), "dog/0.png": png_bytes(), "dog/huge.png": buf.getvalue()})
    refused(post(client, tokens["alice"], bomb), 413, "dog/huge.png")
    assert_nothing_left(data_dir)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"eps": "0"}, "eps"),
        ({"eps": "33"}, "eps"),
        ({"eps": "-1"}, "eps"),
        ({"eps": "lots"}, "eps"),
        ({"method": "pgd"}, "method"),
        ({"preset": "turbo"}, "preset"),
        ({"steps": "0"}, "steps"),
        ({"output_format": "gif"}, "output_format"),
        ({"jpeg_quality": "101"}, "jpeg_quality"),
        ({"measure": "perhaps"}, "measure"),
    ],
)
def test_bad_form_values_are_422_naming_the_field(
    client: TestClient, tokens: dict[str, str], data_dir: Path, fields: dict[str, str], field: str
) -> None:
    r = post(client, tokens["alice"], dataset_zip(), **fields)
    detail = refused(r, 422, field)
    assert detail.startswith(field)
    assert any(field in e["loc"] for e in r.json()["errors"])
    assert_nothing_left(data_dir)


def test_missing_dataset_is_422(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    r = client.post(JOBS, headers=bearer(tokens["alice"]), data={"preset": "fast"})
    refused(r, 422, "dataset")
    assert_nothing_left(data_dir)


def test_broker_unreachable_is_503_without_orphans(
    client: TestClient, tokens: dict[str, str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEPGUARD_BROKER_URL", "redis://127.0.0.1:1/0")
    reload_settings()
    try:
        refused(post(client, tokens["alice"], dataset_zip()), 503, "unreachable")
        assert_nothing_left(data_dir)
    finally:
        monkeypatch.delenv("SEPGUARD_BROKER_URL")
        reload_settings()
    assert job_count() == 0


def test_upload_without_length_is_cut_off_while_streaming(
    client: TestClient, tokens: dict[str, str], data_dir: Path, limits
) -> None:
    limits(max_upload_bytes=1000)
    boundary = "sepguardboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="dataset"; filename="big.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    sent = []

    def body():
        yield head
        for _ in range(64):  # 4 MiB in 64 KiB pieces, no Content-Length
            sent.append(1)
            yield bytes(64 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = bearer(tokens["alice"]) | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = client.post(JOBS, headers=headers, content=body())
    refused(r, 413, "1000")
    assert_nothing_left(data_dir)


def test_save_upload_stops_at_the_limit_and_removes_the_partial_file(tmp_path: Path) -> None:
    class Source:
        def __init__(self) -> None:
            self.reads = 0

        async def read(self, size: int = -1) -> bytes:
            self.reads += 1
            return bytes(size) if self.reads <= 100 else b""

    source = Source()
    dest = tmp_path / "job" / "upload.zip"
    with pytest.raises(LimitExceeded, match="larger than the limit of 5000 bytes"):
        asyncio.run(storage.save_upload(source, dest, max_bytes=5000, chunk_bytes=1024))
    assert source.reads == 5  # stopped at the first chunk past the limit
    assert not dest.exists()
    ok = Source()
    assert asyncio.run(storage.save_upload(ok, dest, max_bytes=10**9, chunk_bytes=10)) == 1000
    assert dest.stat().st_size == 1000
