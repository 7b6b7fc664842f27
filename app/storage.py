"""Where a job's files live, and streaming uploads to disk with the size limit enforced as bytes arrive.

Layout of ``<data dir>/jobs/<job id>/``::

    upload.zip | upload.tar.gz   the uploaded archive
    dataset/                     the extracted dataset
    index.json                   the validated dataset index
    checkpoints.pt               the surrogate's checkpoints
    means.pt                     class means of the features
    shards/<i>.npy               crafted perturbations, one file per shard
    protected.zip                the result
    previews/                    before/after/delta thumbnails and previews.json
"""

import re
from pathlib import Path
from typing import Protocol

from app.core.config import get_settings
from engine.archive import check_free_space, disk_full_as_error, remove_tree
from engine.errors import LimitExceeded

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
PREVIEW_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.png$")
UPLOAD_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


class AsyncReader(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


def job_dir(job_id: str) -> Path:
    """The folder of one job: ``<data dir>/jobs/<job id>/`` (the id must be a uuid4 hex)."""
    if not JOB_ID_RE.match(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    return get_settings().jobs_dir / job_id


def upload_name(filename: str | None) -> str:
    """The stored upload's name, keeping a recognised archive suffix (``upload.zip`` otherwise)."""
    name = (filename or "").lower()
    for suffix in UPLOAD_SUFFIXES:
        if name.endswith(suffix):
            return "upload" + (".tar.gz" if suffix == ".tgz" else suffix)
    return "upload.zip"


def upload_path(job_id: str, filename: str | None = None) -> Path:
    """Where the uploaded archive of a job is stored."""
    return job_dir(job_id) / upload_name(filename)


def index_path(job_id: str) -> Path:
    """The saved dataset index of a job."""
    return job_dir(job_id) / "index.json"


def shards_dir(job_id: str) -> Path:
    """The folder of crafted shards."""
    return job_dir(job_id) / "shards"


def shard_path(job_id: str, index: int) -> Path:
    """The crafted perturbation of one shard."""
    return shards_dir(job_id) / f"{index}.npy"


def protected_zip_path(job_id: str) -> Path:
    """The protected dataset of a job."""
    return job_dir(job_id) / "protected.zip"


def previews_dir(job_id: str) -> Path:
    """The preview thumbnails of a job."""
    return job_dir(job_id) / "previews"


def previews_index_path(job_id: str) -> Path:
    """The list of previews of a job (``previews/previews.json``)."""
    return previews_dir(job_id) / "previews.json"


def preview_path(job_id: str, name: str) -> Path:
    """One preview PNG; ``name`` must be a plain file name ending in .png (no folders, no traversal)."""
    if not PREVIEW_NAME_RE.match(name) or ".." in name:
        raise ValueError(f"invalid preview name {name!r}")
    return previews_dir(job_id) / name


def remove_job_files(job_id: str) -> None:
    """Delete every file of a job (nothing happens if there are none)."""
    remove_tree(job_dir(job_id))


def remove_partial_files(job_id: str) -> None:
    """Delete a stopped job's intermediate and result files, keeping its upload and index."""
    root = job_dir(job_id)
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.name.startswith("upload") or child.name == "index.json":
            continue
        if child.is_dir() and not child.is_symlink():
            remove_tree(child)
        else:
            child.unlink(missing_ok=True)


async def save_upload(source: AsyncReader, dest: Path, max_bytes: int, chunk_bytes: int | None = None) -> int:
    """Stream ``source`` to ``dest`` chunk by chunk; raise ``LimitExceeded`` (and remove the partial file)
    as soon as more than ``max_bytes`` arrived, ``OutOfDiskSpace`` when the disk fills up (or its free space
    falls below ``SEPGUARD_MIN_FREE_DISK_BYTES``). Returns the number of bytes written."""
    settings = get_settings()
    chunk = chunk_bytes or settings.upload_chunk_bytes
    written = 0
    try:
        with disk_full_as_error():
            dest.parent.mkdir(parents=True, exist_ok=True)
            check_free_space(dest.parent, settings.min_free_disk_bytes)
            with dest.open("wb") as out:
                while data := await source.read(chunk):
                    written += len(data)
                    if written > max_bytes:
                        raise LimitExceeded(
                            f"upload is larger than the limit of {max_bytes} bytes ({_human(max_bytes)})"
                        )
                    check_free_space(dest.parent, settings.min_free_disk_bytes)
                    out.write(data)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return written


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
