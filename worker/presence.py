"""Worker presence: every running worker touches a file of its own in the shared data folder,
so the API can count the live workers (``/healthz``) without a broker round trip. A worker that
is killed stops touching its file, and the file goes stale after one lease."""

import logging
import os
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_stop = threading.Event()


def presence_dir() -> Path:
    """``<data dir>/workers/``: one file per live worker process."""
    from app.core.config import get_settings

    return get_settings().data_path / "workers"


def presence_file() -> Path:
    """This worker's file: host name and process id."""
    return presence_dir() / f"{socket.gethostname()}-{os.getpid()}"


def beat() -> None:
    """Mark this worker alive now."""
    path = presence_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def start_presence(interval: float) -> None:
    """Beat every ``interval`` seconds in a background thread until ``stop_presence``."""
    _stop.clear()
    beat()

    def run() -> None:
        while not _stop.wait(interval):
            try:
                beat()
            except OSError as exc:
                log.warning("worker presence not recorded: %s", exc)

    threading.Thread(target=run, name="worker-presence", daemon=True).start()


def stop_presence() -> None:
    """Stop beating and remove this worker's file (a graceful stop)."""
    _stop.set()
    presence_file().unlink(missing_ok=True)


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
