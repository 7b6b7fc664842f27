"""This worker's presence beat: a file of its own in ``<data dir>/workers/``, touched every
heartbeat and removed at a graceful stop (the API counts the fresh ones: ``app.jobs.presence``)."""

import logging
import os
import socket
import threading
from pathlib import Path

from app.jobs.presence import presence_dir

log = logging.getLogger(__name__)

_stop = threading.Event()


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
