"""Running one stage (or one crafting shard) of a job with all the bookkeeping around it.

The tasks in ``worker.tasks`` hand a pure engine call to ``run_stage``/``run_shard``, which:
claim the work in the database (skipping finished or busy work on redelivery), keep a
heartbeat, report throttled progress, turn exceptions into a failed job, honour cancel
requests, mark the work done and send the next stage.
"""

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from app.core.config import get_settings
from app.db_models import JobStatus
from app.jobs import state
from app.jobs.dispatch import BrokerUnavailable, dispatch_next
from app.jobs.plan import progress_before, stage_order, stage_weights
from app.storage import job_dir
from engine.config import ProtectConfig
from engine.errors import DatasetError, OutOfDiskSpace
from engine.job_dir import JobDir
from worker.stage_progress import JobCancelled, JobStopped, StageProgress, StopFlag, heartbeat

log = logging.getLogger(__name__)

Outcome = Literal["done", "skipped", "busy", "stopped", "cancelled", "failed", "missing"]


@dataclass
class StageContext:
    """What an engine call needs: the job's folder, its config and a progress callback."""

    job_id: str
    dir: JobDir
    cfg: ProtectConfig
    params: dict[str, Any]
    progress: StageProgress


# A stage's work returns values to store on the Job row (dataset_summary, metrics...), or None.
Work = Callable[[StageContext], dict[str, Any] | None]


# How torch reports a checkpoint write cut short (it hides the OSError of a full disk).
TORCH_WRITE_FAILED = ("file write failed", "unexpected pos")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception behind it) is a write that failed for want of disk space."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(current, RuntimeError) and any(t in str(current) for t in TORCH_WRITE_FAILED):
            return True
        current = current.__cause__ or current.__context__
    return False


def error_message(exc: BaseException) -> str:
    """The text shown to the user: the dataset error as is, a full disk in words, anything else with its type."""
    text = str(exc).strip()
    if isinstance(exc, OutOfDiskSpace) or disk_full(exc):
        return str(OutOfDiskSpace())
    if isinstance(exc, DatasetError):
        return text or "the dataset cannot be used"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def cancel_now(job_id: str) -> None:
    """End the job as cancelled and remove its partial files (safe to repeat)."""
    state.mark_cancelled(job_id)
    state.remove_partial_files(job_id)


def advance(job_id: str) -> None:
    """Send the next stage; if the broker is down the lease sweep sends it later."""
    try:
        dispatch_next(job_id)
    except BrokerUnavailable as exc:
        log.warning("job %s: next stage not sent (%s); it resumes when its lease expires", job_id, exc)


def _enter(job_id: str, stage: str) -> tuple[Outcome | None, state.JobInfo | None]:
    """Check the job may run ``stage`` and mark it running: (None, job) to go on, else (outcome, None)."""
    job = state.load_job(job_id)
    if job is None:
        return "missing", None
    if job.cancel_requested and not state.is_finished(job.status):
        cancel_now(job_id)
        return "cancelled", None
    if state.is_finished(job.status):
        if job.status == JobStatus.CANCELLED:
            state.remove_partial_files(job_id)  # in case a late task wrote files after the cancel
        return "stopped", None
    if stage not in stage_order(job.params):
        return "skipped", None
    claim = state.start_job(job_id)
    if claim != "run":
        return ("missing" if claim == "missing" else "stopped"), None
    state.ensure_stage_rows(job_id, stage_order(job.params))
    fresh = state.load_job(job_id)
    return (None, fresh) if fresh is not None else ("missing", None)


def _execute(
    job: state.JobInfo, stage: str, work: Work, offset: int = 0, span: int = 1, total: int = 1
) -> tuple[Outcome, dict[str, Any] | None]:
    """Run ``work`` under a heartbeat with progress, mapping how it ended to an outcome."""
    settings = get_settings()
    flag = StopFlag()
    weights = stage_weights(job.params)
    progress = StageProgress(
        job.id,
        stage,
        base=progress_before(job.params, stage),
        weight=weights.get(stage, 0.0),
        started_at=job.started_at,
        flag=flag,
        interval=settings.progress_interval_seconds,
        offset=offset,
        span=span,
        total=total,
    )
    try:
        cfg = ProtectConfig.from_dict(job.params)
        ctx = StageContext(job.id, job_dir(job.id), cfg, job.params, progress)
        with heartbeat(job.id, flag, settings.heartbeat_seconds):
            progress.report(progress.stage_fraction(0, 1))
            values = work(ctx)
            flag.check()
        return "done", values
    except JobCancelled:
        log.info("job %s cancelled during %s", job.id, stage)
        cancel_now(job.id)
        return "cancelled", None
    except JobStopped:
        return "stopped", None
    except Exception as exc:
        log.exception("job %s failed in %s", job.id, stage)
        if not state.fail_job(job.id, stage, error_message(exc)):
            now = state.load_job(job.id)
            if now is not None and now.cancel_requested:
                cancel_now(job.id)  # the failure came from the cancel (files removed under us)
                return "cancelled", None
        return "failed", None


def fail_exhausted(job_id: str, stage: str, what: str, attempts: int) -> Outcome:
    """Fail the job for work that killed its worker ``attempts`` times (never redelivered again)."""
    state.fail_job(job_id, stage, f"{what} was interrupted {attempts} times (its worker process died; out of memory?)")
    return "failed"


def run_stage(job_id: str, stage: str, work: Work) -> Outcome:
    """Run a whole-job stage once, however often its task is delivered."""
    stop, job = _enter(job_id, stage)
    if stop is not None or job is None:
        return stop or "missing"
    settings = get_settings()
    claim = state.claim_stage(job_id, stage, settings.worker_lease_seconds, settings.max_stage_attempts)
    if claim == "done":
        return "skipped"
    if claim == "busy":
        return "busy"
    if claim == "exhausted":
        return fail_exhausted(job_id, stage, f"the {stage} stage", settings.max_stage_attempts)
    outcome, values = _execute(job, stage, work)
    if outcome == "done" and state.finish_stage(job_id, stage, values):
        advance(job_id)
    return outcome


def run_shard(job_id: str, index: int, work: Callable[[StageContext, int, int], None]) -> Outcome:
    """Craft one shard once; the task that finishes the last shard sends the next stage."""
    stop, job = _enter(job_id, "craft")
    if stop is not None or job is None:
        return stop or "missing"
    settings = get_settings()
    claim, span = state.claim_shard(job_id, index, settings.worker_lease_seconds, settings.max_stage_attempts)
    if claim == "exhausted" and span is not None:
        return fail_exhausted(job_id, "craft", f"crafting images {span[0]}-{span[1]}", settings.max_stage_attempts)
    if claim != "run" or span is None:
        return {"done": "skipped", "busy": "busy"}.get(claim, "missing")  # type: ignore[return-value]
    start, end = span
    done_images, total_images = state.shard_images(job_id)
    outcome, _ = _execute(
        job, "craft", lambda ctx: work(ctx, start, end), offset=done_images, span=end - start, total=total_images
    )
    if outcome == "done":
        if state.finish_shard(job_id, index):
            advance(job_id)
    elif outcome == "stopped":
        state.release_shard(job_id, index)
    return outcome


def finalize(job_id: str) -> Outcome:
    """The last task: every stage done -> ``succeeded``; a late cancel request still wins."""
    job = state.load_job(job_id)
    if job is None:
        return "missing"
    if state.is_finished(job.status):
        return "stopped"
    if set(stage_order(job.params)) - state.done_stages(job_id):
        advance(job_id)  # sent too early (should not happen): run what is left first
        return "skipped"
    result = state.finish_job(job_id)
    if result == "cancelled":
        state.remove_partial_files(job_id)
        return "cancelled"
    return "done" if result == "succeeded" else "stopped"
