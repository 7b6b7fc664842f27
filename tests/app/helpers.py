"""Helpers for the service tests: datasets built in memory, auth headers, leftovers checks."""

import io
import zipfile
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from app.core.db import session_scope
from app.db_models import Job


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def png_bytes(size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (200, 30, 30), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else 0).save(buf, "PNG")
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def dataset_zip(classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3) -> bytes:
    """A small valid class-folder dataset."""
    return zip_bytes(
        {
            f"{name}/{i}.png": png_bytes(color=(40 * i, 100 * c % 256, 30))
            for c, name in enumerate(classes)
            for i in range(per_class)
        }
    )


def job_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def assert_nothing_left(data_dir: Path) -> None:
    """No job row and no job file survived a refused upload."""
    assert job_count() == 0
    jobs = data_dir / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir()), sorted(p.name for p in jobs.rglob("*"))
