"""Where a job's folder is, and streaming uploads to disk with the size limit enforced as bytes arrive.

A job's files live in ``<data dir>/jobs/<job id>/``, laid out as ``engine.job_dir.JobDir`` says.
"""

import re
from pathlib import Path
from typing import Protocol

from app.core.config import get_settings
from engine.archive import check_free_space, disk_full_as_error
from engine.errors import LimitExceeded
from engine.job_dir import JobDir

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class AsyncReader(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


def job_dir(job_id: str) -> JobDir:
    """The folder of one job: ``<data dir>/jobs/<job id>/`` (the id must be a uuid4 hex)."""
    if not JOB_ID_RE.match(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    return JobDir(get_settings().jobs_dir / job_id)


def remove_job_files(job_id: str) -> None:
    """Delete every file of a job (nothing happens if there are none)."""
    job_dir(job_id).remove()


def remove_partial_files(job_id: str) -> None:
    """Delete a stopped job's intermediate and result files, keeping its upload and index."""
    job_dir(job_id).remove_partial()


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
