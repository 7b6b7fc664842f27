"""Database operations on jobs used by the API."""

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.db_models import Job, Owner


def get_owned_job(session: Session, owner: Owner, job_id: str) -> Job | None:
    """The job ``job_id`` if it belongs to ``owner``."""
    job = session.get(Job, job_id, options=[selectinload(Job.stages)])
    if job is None or job.owner_id != owner.id:
        return None
    return job


def list_jobs(
    session: Session, owner: Owner, limit: int, offset: int, status: str | None = None
) -> tuple[list[Job], int]:
    """One page of the owner's jobs, newest first, and how many there are in all."""
    where = [Job.owner_id == owner.id] + ([Job.status == status] if status else [])
    total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    query = (
        select(Job)
        .where(*where)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
        .offset(offset)
        .options(selectinload(Job.stages))
    )
    return list(session.scalars(query)), total


def active_jobs(session: Session, owner: Owner) -> int:
    """How many of the owner's jobs are queued or running."""
    where = [Job.owner_id == owner.id, Job.status.in_(("queued", "running"))]
    return session.scalar(select(func.count()).select_from(Job).where(*where)) or 0


def delete_job_row(session: Session, job_id: str) -> None:
    """Delete a job and its stages and shards (commits)."""
    job = session.get(Job, job_id)
    if job is not None:
        session.delete(job)
        session.commit()
