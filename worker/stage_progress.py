"""Progress, ETA, heartbeat and cancellation checks for one running stage or shard.

The engine calls ``progress(stage, done, total)`` often; the database sees at most one write
per ``progress_interval_seconds`` per process. Each write also returns the job's cancel flag,
and a background heartbeat keeps the job's lease fresh (and watches the flag) while the engine
is busy between callbacks, so a cancelled job stops at the engine's next callback.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from app.db_models import JobStatus, utcnow
from app.jobs import state

log = logging.getLogger(__name__)

# Below this much progress or elapsed time an ETA is noise.
MIN_ETA_PROGRESS = 0.01
MIN_ETA_SECONDS = 2.0


def estimate_eta(started_at: datetime | None, overall: float, now: datetime | None = None) -> float | None:
    """Seconds left, from the average rate since the job started."""
    if started_at is None or overall < MIN_ETA_PROGRESS:
        return None
    elapsed = ((now or utcnow()) - started_at).total_seconds()
    if elapsed < MIN_ETA_SECONDS:
        return None
    return max(0.0, elapsed * (1.0 - overall) / overall)


class JobStopped(Exception):
    """The job is no longer running (it failed elsewhere or was cancelled): stop working on it."""


class JobCancelled(JobStopped):
    """The user asked to cancel the job."""


class StopFlag:
    """Set when the job must stop; raising happens in the working thread, at the next callback."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.cancelled = False

    def observe(self, seen: tuple[bool, str] | None) -> None:
        """Record what a database write returned about the job: (cancel_requested, status)."""
        if seen is None:
            self.cancelled = True  # the job was deleted
            self._event.set()
            return
        cancel_requested, status = seen
        if cancel_requested or status == JobStatus.CANCELLED:
            self.cancelled = True
            self._event.set()
        elif status != JobStatus.RUNNING:
            self._event.set()

    def check(self) -> None:
        """Raise if the job must stop."""
        if self._event.is_set():
            raise JobCancelled("cancelled") if self.cancelled else JobStopped("the job ended")

    @property
    def is_set(self) -> bool:
        return self._event.is_set()


class StageProgress:
    """The ``Progress`` callback given to an engine stage.

    ``base`` and ``weight`` place the stage in the whole run. For a crafting shard,
    ``offset``/``span``/``total`` place the shard's images among all images, so the stage
    fraction counts shards finished elsewhere (read when the shard started).
    """

    def __init__(
        self,
        job_id: str,
        stage: str,
        base: float,
        weight: float,
        started_at: datetime | None,
        flag: StopFlag,
        interval: float,
        offset: int = 0,
        span: int = 1,
        total: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id, self.stage, self.base, self.weight = job_id, stage, base, weight
        self.started_at, self.flag, self.interval = started_at, flag, interval
        self.offset, self.span, self.total = offset, span, max(1, total)
        self.clock = clock
        self._last = float("-inf")
        self.writes = 0

    def stage_fraction(self, done: int, total: int) -> float:
        frac = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
        return min(1.0, (self.offset + frac * self.span) / self.total)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.flag.check()
        now = self.clock()
        if now - self._last < self.interval:
            return
        self._last = now
        self.report(self.stage_fraction(done, total))
        self.flag.check()

    def report(self, stage_fraction: float) -> None:
        """Write progress now (not throttled)."""
        overall = min(1.0, self.base + self.weight * stage_fraction)
        eta = estimate_eta(self.started_at, overall)
        self.writes += 1
        self.flag.observe(state.write_progress(self.job_id, self.stage, stage_fraction, overall, eta))


@contextmanager
def heartbeat(job_id: str, flag: StopFlag, interval: float) -> Iterator[None]:
    """Keep the job's lease fresh while the block runs, and watch for cancellation."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                flag.observe(state.heartbeat(job_id))
            except Exception as exc:  # a missed beat is harmless; the next one may succeed
                log.warning("heartbeat of job %s failed: %s", job_id, exc)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
