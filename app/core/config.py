"""Service settings from ``SEPGUARD_*`` environment variables, shared by the API, Celery and Alembic."""

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from engine.dataset import Limits


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

    def limits(self) -> "Limits":
        """The dataset limits for ``engine.dataset.open_dataset``."""
        from engine.dataset import Limits

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


def __getattr__(name: str) -> Any:
    """``app.core.config.settings`` is the current ``get_settings()``."""
    if name == "settings":
        return get_settings()
    raise AttributeError(name)
