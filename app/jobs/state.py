"""Job, stage and shard bookkeeping in the project's database.

Every transition is one short transaction with a conditional UPDATE, so that concurrent
workers, redelivered tasks and the API agree without locks held across work:
- a stage or shard is run by whoever moves it from ``pending`` to ``running``; a ``running``
  one is taken over only when the job's heartbeat (``Job.updated_at``) is older than the lease;
- only the task that moves a stage to ``done`` sends the next stage;
- the first failure wins, and a cancel request beats a failure.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError

from app.core.config import get_settings
from app.core.db import session_scope
from app.db_models import Job, JobShard, JobStage, JobStatus, ShardStatus, StageStatus, utcnow
from app.storage import remove_partial_files as remove_job_partial_files

log = logging.getLogger(__name__)

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
Claim = Literal["run", "done", "busy", "stopped", "missing", "exhausted"]


@dataclass(frozen=True)
class JobInfo:
    """What a task needs to know about its job."""

    id: str
    status: str
    params: dict[str, Any]
    cancel_requested: bool
    started_at: datetime | None
    num_images: int  # from the dataset summary: the usable images once the ingest stage is done


def _update(session: Any, stmt: Any) -> int:
    return session.execute(stmt.execution_options(synchronize_session=False)).rowcount


def load_job(job_id: str) -> JobInfo | None:
    """The job's current state, or None if it does not exist (any more)."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        images = int((job.dataset_summary or {}).get("num_images", 0))
        return JobInfo(job.id, job.status, dict(job.params or {}), bool(job.cancel_requested), job.started_at, images)


def lease_threshold(lease_seconds: float) -> datetime:
    """Heartbeats older than this mean the job's worker is gone."""
    return utcnow() - timedelta(seconds=lease_seconds)


def ensure_stage_rows(job_id: str, stages: list[str]) -> None:
    """Create the missing ``JobStage`` rows (``pending``); safe against concurrent callers."""
    with session_scope() as s:
        have = set(s.scalars(select(JobStage.name).where(JobStage.job_id == job_id)))
    missing = [name for name in stages if name not in have]
    if not missing:
        return
    try:
        with session_scope() as s:
            s.add_all(JobStage(job_id=job_id, name=name, status=StageStatus.PENDING, progress=0.0) for name in missing)
    except IntegrityError:
        pass  # another task created them


def start_job(job_id: str) -> Claim:
    """Mark the job running (the first start sets ``started_at``); ``stopped`` if it may not run."""
    now = utcnow()
    with session_scope() as s:
        n = _update(
            s,
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE), Job.cancel_requested.is_(False))
            .values(status=JobStatus.RUNNING, started_at=func.coalesce(Job.started_at, now), updated_at=now),
        )
        if n:
            return "run"
        return "missing" if s.get(Job, job_id) is None else "stopped"


def _take_over_if_stale(job_id: str, lease_seconds: float) -> bool:
    """Refresh the job's heartbeat if it had expired: the previous runner is gone, we take its work."""
    with session_scope() as s:
        return bool(
            _update(
                s,
                update(Job)
                .where(Job.id == job_id, Job.updated_at < lease_threshold(lease_seconds))
                .values(updated_at=utcnow()),
            )
        )


def claim_stage(job_id: str, stage: str, lease_seconds: float, max_attempts: int) -> Claim:
    """Decide whether this task runs ``stage``: ``run``, or ``done``/``busy`` (skip) or ``exhausted``."""
    now = utcnow()
    with session_scope() as s:
        row = s.scalars(select(JobStage).where(JobStage.job_id == job_id, JobStage.name == stage)).one()
        if row.status == StageStatus.DONE:
            return "done"
        if row.status == StageStatus.RUNNING and not _take_over_if_stale(job_id, lease_seconds):
            return "busy"
        attempts = int((row.details or {}).get("attempts", 0)) + 1
        if stage != "craft" and attempts > max_attempts:
            return "exhausted"
        n = _update(
            s,
            update(JobStage)
            .where(JobStage.id == row.id, JobStage.status == row.status)
            .values(
                status=StageStatus.RUNNING,
                started_at=func.coalesce(JobStage.started_at, now),
                details={**(row.details or {}), "attempts": attempts},
            ),
        )
        if not n:
            return "busy"
        _update(s, update(Job).where(Job.id == job_id).values(stage=stage))
        return "run"


def finish_stage(job_id: str, stage: str, job_values: dict[str, Any] | None = None) -> bool:
    """Mark ``stage`` done (and store ``job_values`` on the job); True for the one caller that did it."""
    with session_scope() as s:
        n = _update(
            s,
            update(JobStage)
            .where(JobStage.job_id == job_id, JobStage.name == stage, JobStage.status != StageStatus.DONE)
            .values(status=StageStatus.DONE, progress=1.0, finished_at=utcnow()),
        )
        if n and job_values:
            _update(s, update(Job).where(Job.id == job_id).values(**job_values))
        return bool(n)


def done_stages(job_id: str) -> set[str]:
    """Names of the job's finished stages."""
    with session_scope() as s:
        return set(
            s.scalars(select(JobStage.name).where(JobStage.job_id == job_id, JobStage.status == StageStatus.DONE))
        )


def write_progress(
    job_id: str, stage: str, stage_progress: float, overall: float, eta_seconds: float | None
) -> tuple[bool, str] | None:
    """Record progress (never backwards) and refresh the heartbeat; returns (cancel_requested, status)."""
    with session_scope() as s:
        row = s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                progress=case((Job.progress < overall, overall), else_=Job.progress),
                eta_seconds=eta_seconds,
                stage=stage,
                updated_at=utcnow(),
            )
            .returning(Job.cancel_requested, Job.status)
            .execution_options(synchronize_session=False)
        ).first()
        _update(
            s,
            update(JobStage)
            .where(JobStage.job_id == job_id, JobStage.name == stage, JobStage.progress < stage_progress)
            .values(progress=stage_progress),
        )
    return None if row is None else (bool(row[0]), str(row[1]))


def heartbeat(job_id: str) -> tuple[bool, str] | None:
    """Refresh the job's liveness; returns (cancel_requested, status), None if the job is gone."""
    with session_scope() as s:
        row = s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(updated_at=utcnow())
            .returning(Job.cancel_requested, Job.status)
            .execution_options(synchronize_session=False)
        ).first()
    return None if row is None else (bool(row[0]), str(row[1]))


def fail_job(job_id: str, stage: str | None, error: str) -> bool:
    """Fail the job with ``error`` unless it already ended or a cancel was requested (first failure wins)."""
    now = utcnow()
    with session_scope() as s:
        n = _update(
            s,
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE), Job.cancel_requested.is_(False))
            .values(status=JobStatus.FAILED, error=error, finished_at=now, eta_seconds=None),
        )
        if n and stage:
            _update(
                s,
                update(JobStage)
                .where(JobStage.job_id == job_id, JobStage.name == stage, JobStage.status != StageStatus.DONE)
                .values(status=StageStatus.FAILED, finished_at=now),
            )
        return bool(n)


def mark_cancelled(job_id: str) -> bool:
    """End an active job as ``cancelled`` (its running stages go back to ``pending``)."""
    now = utcnow()
    with session_scope() as s:
        n = _update(
            s,
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE))
            .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, eta_seconds=None),
        )
        if n:
            _update(
                s,
                update(JobStage)
                .where(JobStage.job_id == job_id, JobStage.status == StageStatus.RUNNING)
                .values(status=StageStatus.PENDING),
            )
        return bool(n)


def request_cancel(job_id: str) -> Literal["cancelled", "requested", "finished", "missing"]:
    """The API's cancel: a queued job, or a running one whose worker is gone (heartbeat older
    than the lease), is cancelled at once; a running one is asked to stop."""
    lease = get_settings().worker_lease_seconds
    now = utcnow()
    ended = dict(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, eta_seconds=None)
    with session_scope() as s:
        if _update(s, update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED).values(**ended)):
            return "cancelled"
        silent = update(Job).where(
            Job.id == job_id, Job.status == JobStatus.RUNNING, Job.updated_at < lease_threshold(lease)
        )
        if _update(s, silent.values(**ended)):
            return "cancelled"
        # Keep updated_at as it is: it is the workers' heartbeat, not a sign of life.
        asked = update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        if _update(s, asked.values(cancel_requested=True, updated_at=Job.updated_at)):
            return "requested"
        return "missing" if s.get(Job, job_id) is None else "finished"


def finish_job(job_id: str) -> Literal["succeeded", "cancelled", "skipped"]:
    """The finaliser: a running job whose every stage is done ends ``succeeded``."""
    now = utcnow()
    with session_scope() as s:
        n = _update(
            s,
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.cancel_requested.is_(False))
            .values(status=JobStatus.SUCCEEDED, progress=1.0, eta_seconds=0.0, stage=None, finished_at=now),
        )
        if n:
            return "succeeded"
    if mark_cancelled(job_id):
        return "cancelled"
    return "skipped"


# --- crafting shards -------------------------------------------------------------------------


def create_shards(job_id: str, ranges: list[tuple[int, int]]) -> None:
    """Create the job's ``JobShard`` rows once (a redelivered planning step keeps the first plan)."""
    with session_scope() as s:
        if s.scalar(select(func.count()).select_from(JobShard).where(JobShard.job_id == job_id)):
            return
    try:
        with session_scope() as s:
            s.add_all(
                JobShard(job_id=job_id, index=i, start=a, stop=b, status=ShardStatus.PENDING)
                for i, (a, b) in enumerate(ranges)
            )
    except IntegrityError:
        pass


def unfinished_shards(job_id: str) -> list[int]:
    """Indexes of the shards not done yet."""
    with session_scope() as s:
        return list(
            s.scalars(
                select(JobShard.index)
                .where(JobShard.job_id == job_id, JobShard.status != ShardStatus.DONE)
                .order_by(JobShard.index)
            )
        )


def claim_shard(
    job_id: str, index: int, lease_seconds: float, max_attempts: int
) -> tuple[Claim, tuple[int, int] | None]:
    """Decide whether this task crafts shard ``index``; returns the claim and the image range.

    A shard whose worker died ``max_attempts`` times (a redelivered task that kills every
    worker, e.g. out of memory) is ``exhausted`` instead of being redelivered forever.
    """
    now = utcnow()
    with session_scope() as s:
        shard = s.scalars(select(JobShard).where(JobShard.job_id == job_id, JobShard.index == index)).first()
        if shard is None:
            return "missing", None
        span = (shard.start, shard.stop)
        if shard.status == ShardStatus.DONE:
            return "done", span
        if shard.status == ShardStatus.RUNNING and not _take_over_if_stale(job_id, lease_seconds):
            return "busy", span
        if shard.attempts >= max_attempts:
            return "exhausted", span
        n = _update(
            s,
            update(JobShard)
            .where(JobShard.id == shard.id, JobShard.status == shard.status, JobShard.attempts == shard.attempts)
            .values(status=ShardStatus.RUNNING, attempts=shard.attempts + 1),
        )
        if not n:
            return "busy", span
        _update(
            s,
            update(JobStage)
            .where(JobStage.job_id == job_id, JobStage.name == "craft", JobStage.status == StageStatus.PENDING)
            .values(status=StageStatus.RUNNING, started_at=func.coalesce(JobStage.started_at, now)),
        )
        _update(s, update(Job).where(Job.id == job_id).values(stage="craft"))
        return "run", span


def finish_shard(job_id: str, index: int) -> bool:
    """Mark a shard done; True for the one caller that completed the last shard (it finishes ``craft``)."""
    with session_scope() as s:
        _update(
            s,
            update(JobShard)
            .where(JobShard.job_id == job_id, JobShard.index == index, JobShard.status != ShardStatus.DONE)
            .values(status=ShardStatus.DONE, finished_at=utcnow()),
        )
    if unfinished_shards(job_id):
        return False
    return finish_stage(job_id, "craft")


def release_shard(job_id: str, index: int) -> None:
    """Give a shard back (its task stopped early) so that a resumed job runs it again.

    A stop is not a crash: the attempt does not count towards the shard's limit."""
    with session_scope() as s:
        _update(
            s,
            update(JobShard)
            .where(JobShard.job_id == job_id, JobShard.index == index, JobShard.status == ShardStatus.RUNNING)
            .values(status=ShardStatus.PENDING, attempts=case((JobShard.attempts > 0, JobShard.attempts - 1), else_=0)),
        )


def shard_images(job_id: str) -> tuple[int, int]:
    """(images in finished shards, images in all shards)."""
    with session_scope() as s:
        rows = s.execute(select(JobShard.start, JobShard.stop, JobShard.status).where(JobShard.job_id == job_id)).all()
    done = sum(b - a for a, b, st in rows if st == "done")
    return done, sum(b - a for a, b, _ in rows)


# --- recovery ----------------------------------------------------------------------------------


def stale_jobs(lease_seconds: float, idle_after_seconds: float | None = None) -> list[str]:
    """Active jobs that lost their worker: a stage or shard is ``running`` but the heartbeat is
    older than the lease. With ``idle_after_seconds``, also active jobs with no running work
    and no heartbeat for that long (their next task was lost, e.g. the broker was down when it
    was sent), and not sooner: until then they may simply be waiting in the queue."""
    threshold = lease_threshold(lease_seconds)
    running_stage = (
        select(JobStage.id).where(JobStage.job_id == Job.id, JobStage.status == StageStatus.RUNNING).exists()
    )
    running_shard = (
        select(JobShard.id).where(JobShard.job_id == Job.id, JobShard.status == ShardStatus.RUNNING).exists()
    )
    cond = (Job.updated_at < threshold) & (running_stage | running_shard)
    if idle_after_seconds is not None:
        cond = cond | (Job.updated_at < lease_threshold(idle_after_seconds))
    with session_scope() as s:
        return list(s.scalars(select(Job.id).where(Job.status.in_(ACTIVE), cond)))


def claim_orphan(job_id: str, lease_seconds: float) -> bool:
    """Atomically adopt a stale job: refresh its heartbeat and hand its running work back to ``pending``.

    Only one sweeper wins; the tasks it then sends find their stage or shard ``pending``.
    """
    with session_scope() as s:
        n = _update(
            s,
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE), Job.updated_at < lease_threshold(lease_seconds))
            .values(updated_at=utcnow()),
        )
        if not n:
            return False
        _update(
            s,
            update(JobStage)
            .where(JobStage.job_id == job_id, JobStage.status == StageStatus.RUNNING)
            .values(status=StageStatus.PENDING),
        )
        _update(
            s,
            update(JobShard)
            .where(JobShard.job_id == job_id, JobShard.status == ShardStatus.RUNNING)
            .values(status=ShardStatus.PENDING),
        )
        return True


def is_finished(status: str) -> bool:
    """Whether a job with this status has ended."""
    return JobStatus(status).finished


def remove_partial_files(job_id: str) -> None:
    """Delete a stopped job's intermediate and result files (the upload and index stay)."""
    remove_job_partial_files(job_id)
