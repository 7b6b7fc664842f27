"""The Celery application, configuration only: the API sends tasks with it, the worker entry
point (``worker.main``) runs them.

Importing this module has no side effect: it creates no folder, connects no signal and reads
the settings only when Celery first needs its configuration.

No result backend: every job's state lives in the project's database, which the API reads.
Tasks are acknowledged late and rejected when their worker dies, so a broker that supports
redelivery (Redis, RabbitMQ) hands an interrupted stage to another worker; the lease sweep
in ``worker.recovery`` covers brokers that do not (the embedded SQLite broker).
"""

from typing import Any

from celery import Celery

from app.core.config import Settings, get_settings

QUEUE = "sepguard"


def is_database_broker(url: str) -> bool:
    """Whether the broker is kombu's SQLAlchemy transport (the embedded SQLite broker)."""
    return url.startswith(("sqla+", "sqlalchemy+"))


def broker_options(settings: Settings) -> dict[str, Any]:
    """Transport options for the configured broker (they differ per transport)."""
    url = settings.celery_broker_url
    if is_database_broker(url):
        # Passed to sqlalchemy.create_engine: wait for SQLite's write lock instead of failing.
        # (This transport hands every option to create_engine, so its polling interval is set
        # on the transport class by the worker: see worker.main.)
        return {"connect_args": {"timeout": 30}} if "sqlite" in url else {}
    if url.startswith(("redis", "rediss", "sentinel")):
        return {
            "visibility_timeout": settings.broker_visibility_timeout,
            "socket_connect_timeout": settings.broker_check_timeout,
        }
    return {}


def build_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from the service settings."""
    url = settings.celery_broker_url
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
        "worker_enable_remote_control": not is_database_broker(url),
    }


def create_broker_folder(settings: Settings | None = None) -> None:
    """The embedded SQLite broker's file lives in the data folder: create the folder before the
    first connection (sending a task, starting a worker)."""
    settings = settings or get_settings()
    if is_database_broker(settings.celery_broker_url) and "sqlite" in settings.celery_broker_url:
        settings.data_path.mkdir(parents=True, exist_ok=True)


celery_app = Celery("sepguard")
# Read when Celery first needs its configuration, not at import.
celery_app.add_defaults(lambda: build_config(get_settings()))


def configure(settings: Settings | None = None) -> Celery:
    """(Re)apply the settings, e.g. after a test changed the ``SEPGUARD_*`` environment."""
    celery_app.conf.update(build_config(settings or get_settings()))
    # Connections pooled for the previous broker URL must not be reused.
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    return celery_app
