"""Worker-only settings (``SEPGUARD_*``), kept apart from the service settings the API reads."""

import os
from functools import lru_cache
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """Knobs that only matter inside a Celery worker process."""

    model_config = SettingsConfigDict(env_prefix="SEPGUARD_", extra="ignore")

    def __init__(self, **values: Any) -> None:
        # A .env file is read only when SEPGUARD_ENV_FILE names it, never from the current folder.
        values.setdefault("_env_file", os.environ.get("SEPGUARD_ENV_FILE") or None)
        super().__init__(**values)

    # Torch threads per task process; default: CPU cores divided by the worker's concurrency.
    torch_threads: int | None = Field(default=None, gt=0)
    # A running job whose heartbeat is older than this is presumed orphaned (its worker died)
    # and its unfinished stage or shards are sent again. Heartbeats are written every lease/4 s.
    worker_lease_seconds: float = Field(default=120.0, gt=0)
    # A job with no running work and no heartbeat for this many leases is presumed to have lost
    # its next task (e.g. the broker was down when it was sent) and that task is sent again.
    idle_lease_factor: float = Field(default=10.0, ge=1)
    # How often a worker looks for orphaned jobs.
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
    def heartbeat_seconds(self) -> float:
        """Interval of the liveness heartbeat written by running tasks."""
        return max(0.5, self.worker_lease_seconds / 4)

    @property
    def sweep_seconds(self) -> float:
        """Interval of the orphaned-job sweep."""
        return self.sweep_interval_seconds or max(1.0, self.worker_lease_seconds / 2)


@lru_cache
def get_worker_settings() -> WorkerSettings:
    """The process-wide worker settings."""
    return WorkerSettings()
