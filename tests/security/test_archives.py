"""Hostile archives: refused by name before they cost memory or disk, with nothing left behind.

Issue items 1-5: tar header bombs, entries no limit counted, forged zip sizes, deep nesting,
over-long names and a full disk. Each attack runs against the engine and through the API.
"""

import errno
import shutil
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.archive import Limits, disk_full_as_error, extract_archive, remove_tree
from engine.errors import DatasetError, LimitExceeded, OutOfDiskSpace
from tests.app.helpers import assert_nothing_left, bearer, dataset_zip
from tests.conftest import reload_settings
from tests.security.archives import (
    blank_bmp,
    nested_zip,
    png_bytes,
    tar_with_big_header,
    tar_with_entries,
    zip_with_forged_sizes,
)

JOBS = "/api/v1/jobs"
MiB = 1 << 20


def post(client: TestClient, token: str, data: bytes, filename: str = "data.zip"):
    return client.post(JOBS, headers=bearer(token), files={"dataset": (filename, data, "application/octet-stream")})


def refused(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word.lower() in detail.lower(), detail
    return detail


def peak_traced(func, *args) -> tuple[BaseException | None, int]:
    """Run ``func``; return what it raised and the peak of Python memory it allocated."""
    tracemalloc.start()
    try:
        func(*args)
        raised = None
    except Exception as exc:
        raised = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak


# 1. Tar header memory bomb -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE], ids=["gnu-longname", "pax"])
def test_tar_header_bomb_is_refused_in_flat_memory(tmp_path: Path, kind: bytes) -> None:
    bomb = tar_with_big_header(tmp_path / "bomb.tar.gz", kind, 64 * MiB)
    assert bomb.stat().st_size < MiB
    raised, peak = peak_traced(extract_archive, bomb, tmp_path / "out", Limits())
    assert isinstance(raised, LimitExceeded), raised
    assert "tar header" in str(raised) and "64.0 KiB" in str(raised)
    assert peak < 4 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert not (tmp_path / "out").exists()


def test_tar_header_bomb_through_the_api(
    client: TestClient, tokens: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    bomb = tar_with_big_header(tmp_path / "bomb.tar.gz", tarfile.GNUTYPE_LONGNAME, 64 * MiB).read_bytes()
    tracemalloc.start()
    try:
        response = post(client, tokens["alice"], bomb, "bomb.tar.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    refused(response, 413, "tar header")
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert_nothing_left(data_dir)


# 2. Entries that no limit counted --------------------------------------------------------------------


def test_tar_folder_entries_count_against_the_entry_limit(tmp_path: Path) -> None:
    archive = tar_with_entries(tmp_path / "dirs.tar.gz", dirs=200_000)
    with pytest.raises(LimitExceeded, match="more than 50 files"):
        extract_archive(archive, tmp_path / "out", Limits(max_files=50))
    assert not (tmp_path / "out").exists()


def test_zip_folder_and_junk_entries_count_against_the_entry_limit(tmp_path: Path) -> None:
    from tests.app.helpers import zip_bytes

    files = {"cat/0.png": b"x", "dog/0.png": b"y"} | {f"cat/.junk{i}": b"" for i in range(10)}
    source = tmp_path / "junk.zip"
    source.write_bytes(zip_bytes(files))
    with pytest.raises(LimitExceeded, match="more than 5 files"):
        extract_archive(source, tmp_path / "out", Limits(max_files=5))


def test_hidden_tar_member_counts_against_the_ratio(tmp_path: Path) -> None:
    archive = tar_with_entries(tmp_path / "hidden.tar.gz", hidden_bytes=128 * MiB)
    assert archive.stat().st_size < MiB  # about 1000:1
    with pytest.raises(LimitExceeded, match="compression ratio"):
        extract_archive(archive, tmp_path / "out", Limits())


def test_hidden_tar_member_through_the_api(
    client: TestClient, tokens: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    archive = tar_with_entries(tmp_path / "hidden.tar.gz", hidden_bytes=128 * MiB).read_bytes()
    refused(post(client, tokens["alice"], archive, "hidden.tar.gz"), 413, "compression ratio")
    assert_nothing_left(data_dir)


# 3. Forged zip sizes ---------------------------------------------------------------------------------


def forged_zip() -> bytes:
    """A 30 MB blank BMP (about 1000:1) whose header claims 1/100 of it as compressed size."""
    bmp = blank_bmp(3200)
    entries = {"cat/0.png": png_bytes(), "dog/0.png": png_bytes(), "dog/blank.bmp": bmp}
    return zip_with_forged_sizes(entries, "dog/blank.bmp", len(bmp) // 100)


def test_forged_zip_sizes_do_not_hide_the_ratio(tmp_path: Path) -> None:
    source = tmp_path / "forged.zip"
    source.write_bytes(forged_zip())
    assert source.stat().st_size < 200 * 1024
    with pytest.raises(LimitExceeded, match="compression ratio"):
        extract_archive(source, tmp_path / "out", Limits())
    assert not (tmp_path / "out").exists()


def test_forged_zip_through_the_api(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    refused(post(client, tokens["alice"], forged_zip()), 413, "compression ratio")
    assert_nothing_left(data_dir)


# 4. Deep nesting -------------------------------------------------------------------------------------


def test_deep_nesting_is_refused(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    refused(post(client, tokens["alice"], nested_zip(1200)), 400, "levels deep", "limit of 32")
    assert_nothing_left(data_dir)


def test_nesting_within_the_limit_is_accepted(tmp_path: Path) -> None:
    source = tmp_path / "ok.zip"
    source.write_bytes(nested_zip(30))
    root = extract_archive(source, tmp_path / "out")
    assert (root / "cat" / Path(*["a"] * 30) / "deep.png").is_file()


def test_cleanup_removes_trees_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    top = tmp_path / "job"
    folder = top
    for _ in range(1500):
        folder = folder / "a"
        folder.mkdir(parents=False) if folder.parent.exists() else folder.mkdir(parents=True)
    (folder / "file").write_bytes(b"x")
    (top / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").mkdir()
    remove_tree(top)
    assert not top.exists()
    assert (tmp_path / "outside").is_dir()  # a link is removed, never followed


# 5. Over-long names and a full disk ------------------------------------------------------------------


def test_over_long_name_is_400_naming_the_entry(client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
    from tests.app.helpers import zip_bytes

    name = "cat/" + "n" * 300 + ".png"
    detail = refused(post(client, tokens["alice"], zip_bytes({name: png_bytes(), "dog/0.png": png_bytes()})), 400)
    assert "cat/" + "n" * 100 in detail and "longer than 255 bytes" in detail
    assert_nothing_left(data_dir)


def test_disk_full_before_the_upload_is_507(
    client: TestClient, tokens: dict[str, str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEPGUARD_MIN_FREE_DISK_BYTES", str(shutil.disk_usage(data_dir).free + 10**12))
    reload_settings()
    refused(post(client, tokens["alice"], dataset_zip()), 507, "the server is out of disk space")
    assert_nothing_left(data_dir)


def test_disk_full_during_extraction_is_507(
    client: TestClient, tokens: dict[str, str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.app.helpers import zip_bytes

    archive = zip_bytes({"cat/0.png": png_bytes(), "dog/0.png": png_bytes(), "dog/blank.bmp": blank_bmp(3200)})
    monkeypatch.setenv("SEPGUARD_MAX_RATIO", "100000")
    # the ~60 kB upload fits; the 30 MB extraction does not
    monkeypatch.setenv("SEPGUARD_MIN_FREE_DISK_BYTES", str(shutil.disk_usage(data_dir).free - 10 * MiB))
    reload_settings()
    refused(post(client, tokens["alice"], archive), 507, "the server is out of disk space")
    assert_nothing_left(data_dir)


def test_extraction_stops_at_the_free_space_reserve(tmp_path: Path) -> None:
    source = tmp_path / "ok.zip"
    source.write_bytes(dataset_zip())
    with pytest.raises(OutOfDiskSpace, match="out of disk space"):
        extract_archive(source, tmp_path / "out", Limits(min_free_bytes=shutil.disk_usage(tmp_path).free + 10**12))
    assert not (tmp_path / "out").exists()


def test_a_real_full_disk_becomes_out_of_disk_space() -> None:
    with pytest.raises(OutOfDiskSpace) as info, disk_full_as_error(), open("/dev/full", "wb", buffering=0) as full:
        full.write(b"x" * 4096)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert not isinstance(info.value, DatasetError)  # a server problem, not the user's dataset


def test_a_full_disk_in_the_worker_fails_the_job_in_words() -> None:
    import torch

    from worker.runner import error_message

    with pytest.raises(RuntimeError) as torch_error:  # what torch.save says when the disk is full
        torch.save({"weights": torch.zeros(100_000)}, "/dev/full")
    assert error_message(torch_error.value) == "the server is out of disk space"
    with pytest.raises(OSError) as os_error, open("/dev/full", "wb", buffering=0) as full:
        full.write(b"x" * 4096)
    assert error_message(os_error.value) == "the server is out of disk space"
    assert error_message(OutOfDiskSpace()) == "the server is out of disk space"
    assert error_message(ValueError("boom")) == "ValueError: boom"
