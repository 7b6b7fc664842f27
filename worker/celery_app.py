"""The Celery application: ``celery -A worker.celery_app worker`` runs the job pipeline.

No result backend: every job's state lives in the project's database, which the API reads.
Tasks are acknowledged late and rejected when their worker dies, so a broker that supports
redelivery (Redis, RabbitMQ) hands an interrupted stage to another worker; the lease sweep
in ``worker.recovery`` covers brokers that do not (the embedded SQLite broker).
"""

from typing import Any

from celery import Celery, signals
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

from app.core.config import Settings, get_settings
from worker.settings import get_worker_settings

QUEUE = "sepguard"
# The database transport polls for messages (kombu's default: every second); a local query
# every 0.2 s lets a worker start the next craft shard without idling (bench/results/scale.md).
DATABASE_POLLING_SECONDS = 0.2
SQLAlchemyTransport.polling_interval = DATABASE_POLLING_SECONDS


def broker_options(settings: Settings) -> dict[str, Any]:
    """Transport options for the configured broker (they differ per transport)."""
    url = settings.celery_broker_url
    timeout = settings.broker_check_timeout
    if url.startswith(("sqla+", "sqlalchemy+")):
        # Passed to sqlalchemy.create_engine: wait for SQLite's write lock instead of failing.
        # (This transport hands every option to create_engine, so its polling interval is set
        # on the transport class instead: see DATABASE_POLLING_SECONDS.)
        return {"connect_args": {"timeout": 30}} if "sqlite" in url else {}
    if url.startswith(("redis", "rediss", "sentinel")):
        return {
            "visibility_timeout": get_worker_settings().broker_visibility_timeout,
            "socket_connect_timeout": timeout,
        }
    return {}


def build_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from the service settings."""
    url = settings.celery_broker_url
    if url.startswith(("sqla+sqlite", "sqlalchemy+sqlite")):
        settings.data_path.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": url,
        "broker_transport_options": broker_options(settings),
        "broker_connection_timeout": settings.broker_check_timeout,
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        # The SQLite broker has no fanout exchanges: remote control (revoke...) cannot work.
        "worker_enable_remote_control": not url.startswith(("sqla+", "sqlalchemy+")),
    }


celery_app = Celery("sepguard", include=["worker.tasks"])


def configure(settings: Settings | None = None) -> Celery:
    """(Re)apply the settings, e.g. after a test changed the ``SEPGUARD_*`` environment."""
    celery_app.conf.update(build_config(settings or get_settings()))
    # Connections pooled for the previous broker URL must not be reused.
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    return celery_app


configure()


@signals.worker_init.connect
def _remember_concurrency(sender: Any = None, **_: Any) -> None:
    """Let task processes size their torch thread pool to their share of the CPU."""
    from worker.device import set_worker_concurrency

    set_worker_concurrency(getattr(sender, "concurrency", None))


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    """Database connections must not be shared across fork."""
    from worker.state import reset_db_after_fork

    reset_db_after_fork()


@signals.worker_ready.connect
def _start_sweeper(sender: Any = None, **_: Any) -> None:
    """Resume jobs whose worker died (their lease expired)."""
    from worker.recovery import start_sweeper

    start_sweeper()


@signals.worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    from worker.recovery import stop_sweeper

    stop_sweeper()


@signals.worker_ready.connect
def _start_presence(sender: Any = None, **_: Any) -> None:
    """Tell the API this worker is alive (``/healthz`` counts the workers)."""
    from worker.presence import start_presence
    from worker.settings import get_worker_settings

    start_presence(get_worker_settings().heartbeat_seconds)


@signals.worker_shutdown.connect
def _stop_presence(**_: Any) -> None:
    from worker.presence import stop_presence

    stop_presence()
