"""Resuming jobs whose worker died.

Redis and RabbitMQ redeliver a killed worker's task (acks_late), but only after their
visibility timeout, and the embedded SQLite broker never does. So every worker also runs a
small sweep: a running job whose heartbeat is older than the lease has lost its worker; one
sweeper adopts it (atomically), hands its running stage/shards back to ``pending`` and sends
the tasks of its unfinished work. Finished stages and shards are never redone.
"""

import logging
import threading

from app.core.config import get_settings
from app.jobs import state
from app.jobs.dispatch import dispatch_next
from worker.runner import cancel_now

log = logging.getLogger(__name__)

_stop = threading.Event()
_thread: threading.Thread | None = None


def resume(job_id: str, lease_seconds: float) -> bool:
    """Adopt one stale job and send its unfinished work; True if this call adopted it."""
    if not state.claim_orphan(job_id, lease_seconds):
        return False
    job = state.load_job(job_id)
    if job is not None and job.cancel_requested:
        cancel_now(job_id)
        return True
    sent = dispatch_next(job_id)
    log.warning("job %s had no live worker for %.0f s; resumed with %d task(s)", job_id, lease_seconds, len(sent))
    return True


def sweep_once(idle_after_seconds: float | None = None) -> list[str]:
    """Resume every job that lost its worker (see ``state.stale_jobs``); returns their ids."""
    lease = get_settings().worker_lease_seconds
    resumed = []
    for job_id in state.stale_jobs(lease, idle_after_seconds):
        try:
            if resume(job_id, lease):
                resumed.append(job_id)
        except Exception as exc:  # broker or database hiccup: the next sweep tries again
            log.warning("could not resume job %s: %s", job_id, exc)
    return resumed


def _loop(interval: float) -> None:
    settings = get_settings()
    # At start-up any silent job may have lost a task with a dead worker; later, a job with no
    # running work is resent only after a long silence, as it may just be waiting in the queue.
    idle_after = settings.worker_lease_seconds
    while True:
        try:
            sweep_once(idle_after)
        except Exception as exc:
            log.warning("job sweep failed: %s", exc)
        idle_after = settings.worker_lease_seconds * settings.idle_lease_factor
        if _stop.wait(interval):
            return


def start_sweeper() -> None:
    """Start the sweep thread of this worker (idempotent)."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    _stop.clear()
    _thread = threading.Thread(target=_loop, args=(get_settings().sweep_seconds,), name="sepguard-sweeper", daemon=True)
    _thread.start()


def stop_sweeper() -> None:
    """Stop the sweep thread."""
    global _thread
    _stop.set()
    if _thread is not None:
        _thread.join(timeout=5)
    _thread = None
