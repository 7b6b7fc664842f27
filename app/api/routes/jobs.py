"""Jobs: upload a dataset to protect, follow the run, download the result."""

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from app import crud, storage
from app.api import presenters
from app.api.deps import AuthFirstRoute, CurrentOwner, SessionDep, SettingsDep
from app.api.presenters import user_message
from app.db_models import Job, Owner, new_job_id
from app.jobs.dispatch import BrokerUnavailable, cancel_job, submit_job
from app.schemas import JobCreate, JobList, JobPublic, JobStatus, Message, PreviewList
from engine.config import ProtectConfig
from engine.errors import DatasetError, LimitExceeded, OutOfDiskSpace
from engine.resolution import resolve_resolution, victim_resolutions

log = logging.getLogger(__name__)
T = TypeVar("T")

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    route_class=AuthFirstRoute,
    responses={
        401: {"model": Message, "description": "Missing, unknown or revoked token"},
        403: {"model": Message, "description": "A change made with the sign-in cookie from another site"},
    },
)

NOT_FOUND = "job not found"
GiB = 1024**3
WORKER_BASE_BYTES = GiB  # torch, the checkpoint ensemble and crafting batches
PACKAGE_BYTES_PER_PIXEL = 40  # the largest image at full size while it is protected and written
QUEUE_DOWN = "the job queue is unreachable; try again in a minute"


@lru_cache
def validation_pool(workers: int) -> ThreadPoolExecutor:
    """The threads that extract and check uploads: apart from the pool every sync route shares,
    so hostile uploads queue here while health checks and job lists keep answering."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload-check")


async def run_validation(workers: int, func: Callable[..., T], *args: Any) -> T:
    """Run ``func(*args)`` in the validation pool."""
    return await asyncio.get_running_loop().run_in_executor(validation_pool(workers), partial(func, *args))


def job_public(job: Job) -> JobPublic:
    """The public view of a job, with links to its result and previews."""
    return presenters.job_public(job, has_previews=storage.job_dir(job.id).previews_index.is_file())


def owned_job(session: SessionDep, owner: CurrentOwner, job_id: str) -> Job:
    """The caller's job ``job_id``; 404 when unknown or someone else's."""
    job = crud.get_owned_job(session, owner, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return job


def with_resolution(params: dict[str, Any], sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """``params`` with the working resolution settled from the upload's image sizes, the reason, and
    the resolutions victims will train at if the protection is measured (for the time estimate)."""
    cfg = resolve_resolution(ProtectConfig.from_dict(params), sizes)
    victims = victim_resolutions(cfg.resolution, sizes)
    return params | {
        "resolution": cfg.resolution,
        "resolution_reason": cfg.resolution_reason,
        "victim_resolutions": victims,
    }


def memory_needed(params: dict[str, Any], summary: dict[str, Any]) -> int:
    """A worker's peak memory for a job, roughly: the working set (N x 3 x R x R as uint8 images,
    float16 perturbations and a float32 copy), the largest image while packaging, and the models."""
    resolution = int(params["resolution"])
    working = int(summary["num_images"]) * 3 * resolution * resolution * (1 + 2 + 4)
    width, height = summary.get("max_size") or (0, 0)
    return WORKER_BASE_BYTES + working + width * height * PACKAGE_BYTES_PER_PIXEL


def check_active_jobs(session: SessionDep, owner: Owner, limit: int) -> None:
    """429 when the owner already has ``limit`` jobs queued or running."""
    if crud.active_jobs(session, owner) >= limit:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"you already have {limit} jobs queued or running (the limit per user); wait for one to finish "
            "or cancel one",
        )


def submit(job_id: str) -> str:
    """Queue the job's pipeline; raises HTTPException 503 when the queue is unreachable."""
    try:
        return submit_job(job_id)
    except BrokerUnavailable as exc:
        log.warning("job %s not queued: %s", job_id, exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, QUEUE_DOWN) from exc


def request_cancel(session: SessionDep, job: Job) -> None:
    """Cancel through the pipeline: a queued job ends at once, a running one is asked to stop and
    its tasks end it."""
    session.commit()
    cancel_job(job.id)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        400: {"model": Message, "description": "Unusable dataset, or a job too large for the workers"},
        413: {"model": Message, "description": "Upload or dataset over a limit"},
        429: {"model": Message, "description": "Too many of your jobs are queued or running"},
        503: {"model": Message, "description": "Job queue unreachable"},
        507: {"model": Message, "description": "The server is out of disk space"},
    },
)
async def create_job(
    response: Response,
    session: SessionDep,
    owner: CurrentOwner,
    settings: SettingsDep,
    form: Annotated[JobCreate, Form()],
    dataset: Annotated[UploadFile, File(description="The dataset: a .zip or .tar.gz of class folders of images.")],
) -> JobPublic:
    """Upload a dataset and queue a protection job."""
    try:
        params = form.params(settings.shard_size)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    check_active_jobs(session, owner, settings.max_active_jobs)
    from engine.dataset import open_dataset

    job_id = new_job_id()
    files = storage.job_dir(job_id)
    job: Job | None = None
    try:
        upload = files.upload(dataset.filename)
        await storage.save_upload(dataset, upload, settings.max_upload_bytes)
        check = partial(open_dataset, decode=False)  # headers only: the worker decodes
        index = await run_validation(
            settings.validation_workers, check, upload, files.root, settings.limits(), form.skip_invalid
        )
        summary = index.summary()
        params = with_resolution(params, index.sizes())
        needed = memory_needed(params, summary)
        if needed > settings.worker_memory_bytes:
            raise DatasetError(
                f"this job would need about {needed / GiB:.1f} GiB of worker memory, more than the "
                f"{settings.worker_memory_bytes / GiB:.1f} GiB a worker has; lower the resolution or split the dataset"
            )
        await run_validation(settings.validation_workers, files.save_index, index)
        check_active_jobs(session, owner, settings.max_active_jobs)  # again: others may have been queued since
        job = Job(id=job_id, owner_id=owner.id, status="queued", params=params, dataset_summary=summary)
        session.add(job)
        session.commit()
        await run_in_threadpool(submit, job_id)
    except BaseException as exc:
        session.rollback()
        if job is not None:
            crud.delete_job_row(session, job_id)
        await run_validation(settings.validation_workers, storage.remove_job_files, job_id)
        if isinstance(exc, OutOfDiskSpace):
            log.error("upload of job %s stopped: %s", job_id, exc.__cause__ or exc)
            raise HTTPException(status.HTTP_507_INSUFFICIENT_STORAGE, str(OutOfDiskSpace())) from exc
        if isinstance(exc, DatasetError):
            message = user_message(exc, files.upload(dataset.filename).name, dataset.filename)
            code = status.HTTP_413_CONTENT_TOO_LARGE if isinstance(exc, LimitExceeded) else status.HTTP_400_BAD_REQUEST
            raise HTTPException(code, message) from exc
        raise
    session.refresh(job)
    response.headers["Location"] = presenters.job_url(job.id)
    return job_public(job)


@router.get("")
def list_jobs(
    session: SessionDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
) -> JobList:
    """List your jobs, newest first."""
    jobs, total = crud.list_jobs(session, owner, limit, offset, status_)
    return JobList(items=[job_public(j) for j in jobs], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", responses={404: {"model": Message}})
def get_job(session: SessionDep, owner: CurrentOwner, job_id: str) -> JobPublic:
    """Get one job: status, stage, progress, ETA, metrics and links."""
    return job_public(owned_job(session, owner, job_id))


@router.get(
    "/{job_id}/download",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The protected dataset"},
        404: {"model": Message},
        409: {"model": Message},
    },
)
def download(session: SessionDep, owner: CurrentOwner, job_id: str) -> FileResponse:
    """Download the protected dataset (a zip; HTTP Range requests are supported)."""
    job = owned_job(session, owner, job_id)
    if job.status != "succeeded":
        raise HTTPException(status.HTTP_409_CONFLICT, f"job is {job.status}; the result exists once it succeeded")
    path = storage.job_dir(job.id).result
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the result file is missing")
    return FileResponse(path, media_type="application/zip", filename=f"protected-{job.id}.zip")


@router.get("/{job_id}/previews", responses={404: {"model": Message}})
def list_previews(session: SessionDep, owner: CurrentOwner, job_id: str) -> PreviewList:
    """List the job's before/after/perturbation thumbnails (empty until they exist)."""
    job = owned_job(session, owner, job_id)
    index = storage.job_dir(job.id).previews_index
    folder = storage.job_dir(job.id).previews
    return presenters.preview_list(job.id, index, folder)


@router.get(
    "/{job_id}/preview/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 400: {"model": Message}, 404: {"model": Message}},
)
def get_preview(session: SessionDep, owner: CurrentOwner, job_id: str, name: str) -> FileResponse:
    """Get one preview image (PNG)."""
    job = owned_job(session, owner, job_id)
    try:
        path = storage.job_dir(job.id).preview(name)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    folder = storage.job_dir(job.id).previews.resolve()
    if not path.is_file() or not path.resolve().is_relative_to(folder):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "preview not found")
    return FileResponse(path, media_type="image/png")


@router.post("/{job_id}/cancel", responses={404: {"model": Message}, 409: {"model": Message}})
def cancel(session: SessionDep, owner: CurrentOwner, job_id: str) -> JobPublic:
    """Cancel a job: a queued job ends at once, a running one within seconds; partial results are removed."""
    job = owned_job(session, owner, job_id)
    if job.finished:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job already {job.status}")
    request_cancel(session, job)
    session.expire_all()
    return job_public(owned_job(session, owner, job_id))


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"model": Message}, 409: {"model": Message}},
)
def delete(session: SessionDep, owner: CurrentOwner, job_id: str) -> Response:
    """Delete a finished job and all its files (cancel a queued or running job first)."""
    job = owned_job(session, owner, job_id)
    if not job.finished:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job is {job.status}; cancel it before deleting it")
    crud.delete_job_row(session, job.id)
    storage.remove_job_files(job.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
