"""The service's one settings surface: every ``SEPGUARD_*`` environment variable of the API, the
workers, the command line and Alembic is a field of ``Settings`` (the README's settings table
lists them all with their defaults).

The engine imports nothing of the service, so the three variables that tune its kernels
(``SEPGUARD_AUTOCAST``, ``SEPGUARD_CHANNELS_LAST``, ``SEPGUARD_FOLD_BN``) are read by
``engine.device`` itself; they are listed in the same table.
"""

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.archive import Limits


class Settings(BaseSettings):
    """Every service setting; each field is read from ``SEPGUARD_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SEPGUARD_", extra="ignore")

    def __init__(self, **values: Any) -> None:
        # A .env file is read only when SEPGUARD_ENV_FILE names it, never from the current folder.
        values.setdefault("_env_file", os.environ.get("SEPGUARD_ENV_FILE") or None)
        super().__init__(**values)

    data_dir: Path = Path("./sepguard-data")
    database_url: str | None = None  # default: SQLite file in the data dir
    broker_url: str | None = None  # default: Celery over a SQLite file in the data dir

    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_uncompressed_bytes: int = Field(default=8 * 1024**3, gt=0)
    max_files: int = Field(default=200_000, gt=0)
    max_pixels: int = Field(default=50_000_000, gt=0)
    max_ratio: float = Field(default=200.0, gt=0)
    # uploads and extraction stop with 507 rather than leave less than this free on the data disk
    min_free_disk_bytes: int = Field(default=256 * 1024**2, ge=0)

    shard_size: int | None = Field(default=None, gt=0)  # overrides the preset's crafting shard size
    session_cookie: str = "sepguard_session"  # a server-side session id, never an API token
    session_max_age_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    login_code_seconds: int = Field(default=15 * 60, gt=0)  # lifetime of a printed one-time sign-in link
    # Browsers keep a Secure cookie over https and on localhost only: set false to sign in
    # over plain http from another machine (e.g. behind a trusted LAN without TLS).
    cookie_secure: bool = True
    upload_chunk_bytes: int = Field(default=1024 * 1024, gt=0)
    max_active_jobs: int = Field(default=3, gt=0)  # queued + running jobs per owner
    worker_memory_bytes: int = Field(default=16 * 1024**3, gt=0)  # what one worker process may use
    validation_workers: int = Field(default=2, gt=0)  # uploads extracted and checked at the same time
    broker_check_timeout: float = Field(default=2.0, gt=0)

    # --- workers ---
    # Torch threads per task process; default: CPU cores divided by the worker's concurrency.
    torch_threads: int | None = Field(default=None, gt=0)
    # A running job whose heartbeat is older than this is presumed orphaned (its worker died)
    # and its unfinished stage or shards are sent again. Heartbeats are written every lease/4 s.
    worker_lease_seconds: float = Field(default=120.0, gt=0)
    # A job with no running work and no heartbeat for this many leases is presumed to have lost
    # its next task (e.g. the broker was down when it was sent) and that task is sent again.
    idle_lease_factor: float = Field(default=10.0, ge=1)
    # How often a worker looks for orphaned jobs (default: every half lease).
    sweep_interval_seconds: float | None = Field(default=None, gt=0)
    # Redis: how long a delivered but unacknowledged task stays invisible before the broker
    # hands it out again. It must exceed the longest stage (training on a big set), else a
    # running stage would be started twice; crashed workers are recovered by the lease sweep.
    broker_visibility_timeout: int = Field(default=12 * 3600, gt=0)
    # At most one progress write per job and process every this many seconds.
    progress_interval_seconds: float = Field(default=1.0, gt=0)
    # A stage or crafting shard that keeps killing its worker (out of memory...) fails the job
    # after this many starts.
    max_stage_attempts: int = Field(default=3, gt=0)

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return self.data_dir.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL (SQLite under the data dir unless set)."""
        return self.database_url or f"sqlite:///{self.data_path / 'sepguard.sqlite'}"

    @property
    def celery_broker_url(self) -> str:
        """The Celery broker URL (SQLite under the data dir unless set)."""
        return self.broker_url or f"sqla+sqlite:///{self.data_path / 'broker.sqlite'}"

    @property
    def jobs_dir(self) -> Path:
        """Where each job's files live: ``<data dir>/jobs/<job id>/``."""
        return self.data_path / "jobs"

    @property
    def heartbeat_seconds(self) -> float:
        """Interval of the liveness heartbeat written by running tasks and by every worker."""
        return max(0.5, self.worker_lease_seconds / 4)

    @property
    def sweep_seconds(self) -> float:
        """Interval of the orphaned-job sweep."""
        return self.sweep_interval_seconds or max(1.0, self.worker_lease_seconds / 2)

    def limits(self) -> Limits:
        """The dataset limits for ``engine.dataset.open_dataset``."""
        return Limits(
            max_upload_bytes=self.max_upload_bytes,
            max_uncompressed_bytes=self.max_uncompressed_bytes,
            max_files=self.max_files,
            max_pixels=self.max_pixels,
            max_ratio=self.max_ratio,
            min_free_bytes=self.min_free_disk_bytes,
        )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests call ``get_settings.cache_clear()`` after changing the environment)."""
    return Settings()
