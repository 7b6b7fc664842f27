"""The worker process: ``celery -A worker.main worker`` (or ``sepguard worker``) runs the job
pipeline.

The Celery application itself (``app.jobs.task_queue``) is configuration only; importing this
module turns it into a worker: it registers the stage tasks and wires the worker's signals
(thread pool sizing, database connections after fork, the orphaned-job sweep and the presence
beat that ``/healthz`` counts).
"""

from typing import Any

from celery import signals
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

from app.core import db
from app.core.config import get_settings
from app.jobs.task_queue import celery_app, create_broker_folder
from worker import recovery, tasks
from worker.presence import start_presence, stop_presence
from worker.task_device import set_worker_concurrency

__all__ = ["celery_app", "tasks"]

# The database transport polls for messages (kombu's default: every second); a local query
# every 0.2 s lets a worker start the next craft shard without idling (bench/results/scale.md).
# Set on the transport class: this transport hands every option to sqlalchemy.create_engine.
DATABASE_POLLING_SECONDS = 0.2
SQLAlchemyTransport.polling_interval = DATABASE_POLLING_SECONDS


@signals.worker_init.connect
def _prepare(sender: Any = None, **_: Any) -> None:
    """Create the embedded broker's folder, and let task processes size their torch thread pool
    to their share of the CPU."""
    create_broker_folder()
    set_worker_concurrency(getattr(sender, "concurrency", None))


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    """Database connections must not be shared across fork: a task process forgets the pooled
    connections it inherited (without closing them, as the parent still uses them)."""
    for engine in list(db._engines.values()):
        engine.dispose(close=False)


@signals.worker_ready.connect
def _start_sweeper(sender: Any = None, **_: Any) -> None:
    """Resume jobs whose worker died (their lease expired)."""
    recovery.start_sweeper()


@signals.worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    recovery.stop_sweeper()


@signals.worker_ready.connect
def _start_presence(sender: Any = None, **_: Any) -> None:
    """Tell the API this worker is alive (``/healthz`` counts the workers)."""
    start_presence(get_settings().heartbeat_seconds)


@signals.worker_shutdown.connect
def _stop_presence(**_: Any) -> None:
    stop_presence()
