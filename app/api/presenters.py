"""How the jobs API shows things: a job row as its payload, the previews a run wrote, the links
between them, and the engine's messages in the user's words. The routes (``app.api.routes.jobs``)
decide what to do; this module only shapes what they answer."""

import logging
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from app.db_models import Job
from app.payloads import Preview
from app.schemas import JobPublic, PreviewList

log = logging.getLogger(__name__)

JOBS_URL = "/api/v1/jobs"
PREVIEWS = TypeAdapter(list[Preview])


def job_url(job_id: str) -> str:
    """Where the API serves the job ``job_id``."""
    return f"{JOBS_URL}/{job_id}"


def job_public(job: Job, has_previews: bool) -> JobPublic:
    """The public view of a job, with links to its result (once it succeeded) and to its previews."""
    out = JobPublic.model_validate(job)
    if job.status == "succeeded":
        out.download_url = f"{job_url(job.id)}/download"
    if has_previews:
        out.preview_url = f"{job_url(job.id)}/previews"
    return out


def preview_list(job_id: str, index: Path, folder: Path) -> PreviewList:
    """The previews that the run listed in ``index`` (none until it exists), and a link to every
    thumbnail in ``folder``."""
    items: list[Preview] = []
    if index.is_file():
        try:
            items = PREVIEWS.validate_json(index.read_bytes())
        except (OSError, ValidationError) as exc:  # a half-written index, or one of an earlier version
            log.warning("previews of job %s not listed: %s", job_id, exc)
    names = sorted(p.name for p in folder.glob("*.png") if p.is_file()) if folder.is_dir() else []
    return PreviewList(items=items, urls={name: f"{job_url(job_id)}/preview/{name}" for name in names})


def user_message(exc: Exception, stored_name: str, filename: str | None) -> str:
    """The engine's message, naming the file as the user called it."""
    message = str(exc)
    if filename and "/" not in filename and "\\" not in filename:
        message = message.replace(stored_name, filename)
    return message
