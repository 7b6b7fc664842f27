"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.core.db import make_engine, upgrade_database
from app.db_models import Base, Job, JobShard, JobStage, Owner

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def schema_diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def check_upgrade_and_downgrade(url: str) -> None:
    check_upgrade_keeps_jobs(url)
    upgrade_database(url)
    assert tables(url) >= {"owners", "api_tokens", "jobs", "job_stages", "job_shards", "alembic_version"}
    assert schema_diff(url) == []
    upgrade_database(url)  # a second upgrade is a no-op
    from alembic import command

    from app.core.db import alembic_config

    command.downgrade(alembic_config(url), "base")
    assert tables(url) <= {"alembic_version"}
    upgrade_database(url)
    assert schema_diff(url) == []
    check_round_trip(url)


def check_round_trip(url: str) -> None:
    """Rows written through the models read back with UTC-aware times, and deleting a job cascades."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            owner = Owner(name="o")
            job = Job(owner=owner, params={"eps": 8.0})
            job.stages = [JobStage(name="train")]
            job.shards = [JobShard(index=0, start=0, stop=10)]
            session.add(job)
            session.commit()
            job_id = job.id
        with Session(engine) as session:
            job = session.get(Job, job_id)
            assert job is not None and job.created_at.utcoffset() == timedelta(0)
            assert job.params == {"eps": 8.0} and job.status == "queued" and job.cancel_requested is False
            assert abs((job.created_at - datetime.now(UTC)).total_seconds()) < 3600
            session.execute(delete(Job).where(Job.id == job_id))  # database-level cascade
            session.commit()
            assert session.scalar(select(func.count()).select_from(JobStage)) == 0
            assert session.scalar(select(func.count()).select_from(JobShard)) == 0
    finally:
        engine.dispose()


def check_upgrade_keeps_jobs(url: str) -> None:
    """A job written before the last migrations keeps its stages and shards through them (a
    table copied and dropped with foreign keys on would cascade-delete them)."""
    upgrade_database(url, "0003")
    engine = make_engine(url)
    now = {"t": datetime.now(UTC)}
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO owners (id, name, is_admin, created_at) VALUES (1, 'o', false, :t)"), now
            )
            connection.execute(
                text(
                    "INSERT INTO jobs (id, owner_id, status, progress, params, created_at, updated_at, celery_task_id, "
                    "cancel_requested) VALUES ('j', 1, 'running', 0.5, '{}', :t, :t, 'j-ingest', false)"
                ),
                now,
            )
            connection.execute(
                text("INSERT INTO job_stages (job_id, name, status, progress) VALUES ('j', 'train', 'done', 1)")
            )
            connection.execute(
                text("INSERT INTO job_shards (job_id, \"index\", start, stop, status) VALUES ('j', 0, 0, 8, 'done')")
            )
        upgrade_database(url)
        assert "celery_task_id" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT status FROM jobs WHERE id = 'j'")) == "running"
            assert connection.scalar(text("SELECT count(*) FROM job_stages WHERE job_id = 'j'")) == 1
            assert connection.scalar(text("SELECT count(*) FROM job_shards WHERE job_id = 'j'")) == 1
    finally:
        engine.dispose()
    from alembic import command

    from app.core.db import alembic_config

    command.downgrade(alembic_config(url), "base")


def test_sqlite(tmp_path: Path) -> None:
    check_upgrade_and_downgrade(f"sqlite:///{tmp_path / 'fresh.sqlite'}")


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A temporary database on the local PostgreSQL server, dropped afterwards."""
    name = f"sepguard_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_postgresql(postgres_database: str) -> None:
    check_upgrade_and_downgrade(postgres_database)
