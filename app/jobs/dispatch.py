"""Sending a job's tasks: submitting and cancelling (what the API calls), and the next stage
once one is done (what the workers call). Torch-free.

Stage tasks are sent by name, so nothing here imports the worker's tasks. Task ids are
deterministic (``<job id>-<stage>[-<shard>]``): every task of a job can be revoked without
storing their ids.
"""

import logging
from collections.abc import Iterable

from app.jobs import state
from app.jobs.plan import TASK_NAMES, next_stage, plan_shards, task_id
from app.jobs.task_queue import celery_app, create_broker_folder

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The task broker could not be reached; the job was not submitted."""


def send_stages(job_id: str, stages: list[tuple[str, int | None]]) -> list[str]:
    """Send stage tasks over one connection, without retrying: raise ``BrokerUnavailable`` at
    once if the broker is down (one quick reconnection attempt, not Celery's retry loop)."""
    ids = []
    try:
        create_broker_folder()
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0.1, interval_step=0, timeout=conn.connect_timeout)
            for stage, shard in stages:
                args: list[object] = [job_id] if shard is None else [job_id, shard]
                tid = task_id(job_id, stage, shard)
                celery_app.send_task(TASK_NAMES[stage], args=args, task_id=tid, connection=conn, retry=False)
                ids.append(tid)
    except Exception as exc:  # any failure to publish means the task was not queued
        raise BrokerUnavailable(f"task broker unavailable: {exc}") from exc
    return ids


def send_stage(job_id: str, stage: str, shard: int | None = None) -> str:
    """Send one stage task (see ``send_stages``)."""
    return send_stages(job_id, [(stage, shard)])[0]


def submit_job(job_id: str) -> str:
    """Queue a job whose row (status ``queued``) and upload exist; returns the first task's id."""
    return send_stage(job_id, "ingest")


def cancel_job(job_id: str) -> None:
    """Ask a job to stop; it ends ``cancelled`` and its partial files are removed.

    A job that has not started is cancelled here and now. A running job is stopped by its
    own tasks, which notice the request within about a second; a running job whose worker
    is gone (lease expired) is cancelled here too.
    """
    outcome = state.request_cancel(job_id)
    if outcome == "cancelled":
        state.remove_partial_files(job_id)
    if outcome in ("cancelled", "requested"):
        revoke_job_tasks(job_id, state.unfinished_shards(job_id))


def revoke_job_tasks(job_id: str, shards: Iterable[int] = ()) -> None:
    """Best effort: tell workers to drop the job's queued tasks (tasks also check the job first)."""
    if not celery_app.conf.worker_enable_remote_control:
        return
    ids = [task_id(job_id, s) for s in TASK_NAMES if s != "craft"]
    ids += [task_id(job_id, "craft", i) for i in shards]
    try:
        celery_app.control.revoke(ids)
    except Exception as exc:  # a missed revoke only costs a task that exits at once
        log.warning("could not revoke the tasks of job %s: %s", job_id, exc)


def dispatch_next(job_id: str) -> list[str]:
    """Send the task(s) of the job's first unfinished stage (one per unfinished crafting shard,
    planned here the first time crafting is reached), or the finaliser when every stage is done.
    Returns the task ids sent."""
    job = state.load_job(job_id)
    if job is None or state.is_finished(job.status):
        return []
    stage = next_stage(job.params, state.done_stages(job_id))
    if stage is None:
        return [send_stage(job_id, "finalize")]
    if stage != "craft":
        return [send_stage(job_id, stage)]
    # The ingest stage stored the number of usable images; a second plan is ignored.
    state.create_shards(job_id, plan_shards(job.params, job.num_images))
    shards = state.unfinished_shards(job_id)
    if shards:
        return send_stages(job_id, [("craft", i) for i in shards])
    if state.shard_images(job_id)[1]:
        # Every shard is done but the stage's own mark was lost; whoever sets it goes on.
        return dispatch_next(job_id) if state.finish_stage(job_id, "craft") else []
    state.fail_job(job_id, "craft", "no crafting shards were planned for this job")
    return []
