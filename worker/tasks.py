"""Celery tasks, one per pipeline stage: a job id in, one pure engine stage, the outcome out.

The engine's stages (torch) are imported inside the tasks only, so that the worker starts (and
forks its task processes) without torch. Each task is safe to deliver twice: ``worker.runner``
skips finished or busy work, and the engine stages skip existing outputs.
"""

from typing import Any

from celery import Task

from app.core.config import get_settings
from app.jobs.plan import TASK_NAMES
from app.jobs.task_queue import celery_app
from worker import runner
from worker.runner import StageContext
from worker.task_device import task_device, task_threads

# The API may send the first task a moment before its transaction that created the job commits.
MISSING_JOB_RETRIES = 10


@celery_app.task(name=TASK_NAMES["ingest"], bind=True)
def ingest_task(self: Task, job_id: str) -> str:
    """Extract and validate the upload, build the working set; store the dataset summary."""

    def work(ctx: StageContext) -> dict[str, Any]:
        from engine import stages  # torch loads in the task process, not at worker start-up

        index = stages.ingest(
            ctx.dir,
            ctx.cfg,
            limits=get_settings().limits(),
            skip_invalid=bool(ctx.params.get("skip_invalid")),
            progress=ctx.progress,
        )
        return {"dataset_summary": index.summary()}

    outcome = runner.run_stage(job_id, "ingest", work)
    if outcome == "missing" and self.request.retries < MISSING_JOB_RETRIES:
        raise self.retry(countdown=1, max_retries=MISSING_JOB_RETRIES)
    return outcome


@celery_app.task(name=TASK_NAMES["train"])
def train_task(job_id: str) -> str:
    """Train the surrogate and save its checkpoints."""

    def work(ctx: StageContext) -> None:
        from engine import stages  # torch loads in the task process, not at worker start-up

        stages.train(ctx.dir, ctx.cfg, ctx.progress, device=task_device())

    return runner.run_stage(job_id, "train", work)


@celery_app.task(name=TASK_NAMES["means"])
def means_task(job_id: str) -> str:
    """Class-mean features of every checkpoint (the crafting shards are planned when the next
    stage is sent: ``app.jobs.dispatch``)."""

    def work(ctx: StageContext) -> None:
        from engine import stages  # torch loads in the task process, not at worker start-up

        stages.means(ctx.dir, ctx.cfg, ctx.progress, device=task_device())

    return runner.run_stage(job_id, "means", work)


@celery_app.task(name=TASK_NAMES["craft"])
def craft_shard_task(job_id: str, shard_index: int) -> str:
    """Craft the perturbations of one shard of images."""

    def work(ctx: StageContext, start: int, stop: int) -> None:
        from engine import stages  # torch loads in the task process, not at worker start-up

        stages.craft_shard(ctx.dir, ctx.cfg, start, stop, ctx.progress, device=task_device())

    return runner.run_shard(job_id, shard_index, work)


@celery_app.task(name=TASK_NAMES["evaluate"])
def evaluate_task(job_id: str) -> str:
    """Measure the protection (victims trained on clean vs protected images); store the metrics."""

    def work(ctx: StageContext) -> dict[str, Any]:
        from engine import stages  # torch loads in the task process, not at worker start-up

        return {"metrics": stages.evaluate(ctx.dir, ctx.cfg, ctx.progress, device=task_device())}

    return runner.run_stage(job_id, "evaluate", work)


@celery_app.task(name=TASK_NAMES["package"])
def package_task(job_id: str) -> str:
    """Write the protected zip (manifest, report) and the previews."""

    def work(ctx: StageContext) -> None:
        from engine import stages  # torch loads in the task process, not at worker start-up

        report = {"job": {"id": ctx.job_id, "preset": ctx.params.get("preset")}}
        stages.package(ctx.dir, ctx.cfg, report, ctx.progress, threads=task_threads())

    return runner.run_stage(job_id, "package", work)


@celery_app.task(name=TASK_NAMES["finalize"])
def finalize_task(job_id: str) -> str:
    """Mark the job succeeded once every stage is done."""
    return runner.finalize(job_id)
