"""Worker presence: every running worker touches a file of its own in the shared data folder
(``worker.presence``), so the API can count the live workers (``/healthz``) without a broker
round trip. A worker that is killed stops touching its file, and the file goes stale after one
lease."""

import os
import time
from pathlib import Path

from app.core.config import get_settings


def presence_dir() -> Path:
    """``<data dir>/workers/``: one file per live worker process."""
    return get_settings().data_path / "workers"


def live_workers(lease_seconds: float) -> int:
    """Worker processes that beat within the last lease."""
    folder = presence_dir()
    if not folder.is_dir():
        return 0
    fresh = time.time() - lease_seconds
    count = 0
    for entry in os.scandir(folder):
        try:
            count += entry.is_file() and entry.stat().st_mtime >= fresh
        except OSError:
            continue
    return count
