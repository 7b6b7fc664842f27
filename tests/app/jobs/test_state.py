"""Database bookkeeping: claims, completion, failure, cancel requests and orphan detection."""

import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from app.core.db import session_scope
from app.db_models import Job, JobShard, JobStage, utcnow
from app.jobs import state
from app.jobs.plan import stage_order

LEASE = 60.0


def get(job_id: str) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
        return job


def stage_status(job_id: str, name: str) -> str:
    with session_scope() as s:
        return s.query(JobStage).filter_by(job_id=job_id, name=name).one().status


def age(job_id: str, seconds: float) -> None:
    """Make the job's heartbeat ``seconds`` old."""
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(seconds=seconds)))


def started(make_job: Callable[..., str]) -> str:
    job_id = make_job()
    assert state.start_job(job_id) == "run"
    state.ensure_stage_rows(job_id, stage_order(state.load_job(job_id).params))
    return job_id


def test_start_marks_running_once(make_job: Callable[..., str]) -> None:
    job_id = make_job()
    assert state.start_job(job_id) == "run"
    first = get(job_id)
    assert first.status == "running" and first.started_at is not None
    assert state.start_job(job_id) == "run"
    assert get(job_id).started_at == first.started_at
    assert state.start_job("f" * 32) == "missing"


def test_stage_rows_follow_the_plan(make_job: Callable[..., str]) -> None:
    job_id = started(make_job)
    with session_scope() as s:
        names = [r.name for r in s.query(JobStage).filter_by(job_id=job_id).order_by(JobStage.id)]
    assert names == ["ingest", "train", "means", "craft", "package"]
    state.ensure_stage_rows(job_id, ["ingest"])  # repeated: nothing changes


def test_stage_claim_is_exclusive_until_the_lease_expires(make_job: Callable[..., str]) -> None:
    job_id = started(make_job)
    assert state.claim_stage(job_id, "ingest", LEASE, 3) == "run"
    assert get(job_id).stage == "ingest"
    assert state.claim_stage(job_id, "ingest", LEASE, 3) == "busy"
    age(job_id, LEASE + 5)
    assert state.claim_stage(job_id, "ingest", LEASE, 3) == "run"  # the first runner is gone
    assert state.finish_stage(job_id, "ingest", {"dataset_summary": {"num_images": 3}})
    assert not state.finish_stage(job_id, "ingest")
    assert state.claim_stage(job_id, "ingest", LEASE, 3) == "done"
    assert get(job_id).dataset_summary == {"num_images": 3}
    assert state.done_stages(job_id) == {"ingest"}


def test_a_stage_that_keeps_dying_is_exhausted(make_job: Callable[..., str]) -> None:
    job_id = started(make_job)
    for _ in range(2):
        assert state.claim_stage(job_id, "train", LEASE, 2) == "run"
        age(job_id, LEASE + 5)
    assert state.claim_stage(job_id, "train", LEASE, 2) == "exhausted"


def test_progress_never_goes_back_and_reports_the_cancel_flag(make_job: Callable[..., str]) -> None:
    job_id = started(make_job)
    assert state.write_progress(job_id, "ingest", 0.5, 0.4, 12.0) == (False, "running")
    state.write_progress(job_id, "ingest", 0.2, 0.1, 30.0)
    job = get(job_id)
    assert job.progress == 0.4 and job.eta_seconds == 30.0
    assert state.request_cancel(job_id) == "requested"
    assert state.write_progress(job_id, "ingest", 0.6, 0.5, 5.0) == (True, "running")
    assert state.heartbeat(job_id) == (True, "running")
    assert state.heartbeat("f" * 32) is None


def test_first_failure_wins_and_cancel_beats_failure(make_job: Callable[..., str]) -> None:
    job_id = started(make_job)
    state.claim_stage(job_id, "ingest", LEASE, 3)
    assert state.fail_job(job_id, "ingest", "first")
    assert not state.fail_job(job_id, "ingest", "second")
    job = get(job_id)
    assert job.status == "failed" and job.error == "first" and job.finished_at is not None
    assert stage_status(job_id, "ingest") == "failed"

    other = started(make_job)
    assert state.request_cancel(other) == "requested"
    assert not state.fail_job(other, "ingest", "broken by the cancel")
    assert state.mark_cancelled(other)
    assert get(other).status == "cancelled"


def test_cancel_request_depends_on_the_state(make_job: Callable[..., str]) -> None:
    queued = make_job()
    assert state.request_cancel(queued) == "cancelled"
    assert state.start_job(queued) == "stopped"

    running = started(make_job)
    before = get(running).updated_at
    assert state.request_cancel(running) == "requested"
    job = get(running)
    assert job.status == "running" and job.cancel_requested
    assert job.updated_at == before  # a cancel request is not a sign of life

    silent = started(make_job)
    age(silent, LEASE * 10)
    assert state.request_cancel(silent) == "cancelled"  # nobody is left to stop it

    assert state.request_cancel(queued) == "finished"
    assert state.request_cancel("f" * 32) == "missing"


def test_finish_job_succeeds_or_honours_a_late_cancel(make_job: Callable[..., str]) -> None:
    job_id = started(make_job)
    assert state.finish_job(job_id) == "succeeded"
    job = get(job_id)
    assert job.status == "succeeded" and job.progress == 1.0 and job.stage is None
    assert state.finish_job(job_id) == "skipped"

    late = started(make_job)
    state.request_cancel(late)
    assert state.finish_job(late) == "cancelled"


def test_shards_fan_in_exactly_once(make_job: Callable[..., str]) -> None:
    job_id = started(make_job)
    ranges = [(i * 16, (i + 1) * 16) for i in range(6)]
    state.create_shards(job_id, ranges)
    state.create_shards(job_id, ranges[:2])  # a second plan is ignored
    assert state.unfinished_shards(job_id) == list(range(6))
    for i in range(6):
        assert state.claim_shard(job_id, i, LEASE, 3) == ("run", ranges[i])
    assert state.claim_shard(job_id, 0, LEASE, 3)[0] == "busy"
    assert stage_status(job_id, "craft") == "running"

    winners: list[bool] = []
    barrier = threading.Barrier(6)

    def finish(i: int) -> None:
        barrier.wait()
        winners.append(state.finish_shard(job_id, i))

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(winners) == [False] * 5 + [True]
    assert stage_status(job_id, "craft") == "done"
    assert state.claim_shard(job_id, 3, LEASE, 3)[0] == "done"
    assert state.shard_images(job_id) == (96, 96)


def test_a_shard_that_keeps_dying_is_exhausted_but_a_stop_does_not_count(make_job: Callable[..., str]) -> None:
    job_id = started(make_job)
    state.create_shards(job_id, [(0, 16)])
    assert state.claim_shard(job_id, 0, LEASE, 2)[0] == "run"
    state.release_shard(job_id, 0)  # a warm shutdown gives the shard back: not a crash
    for _ in range(2):
        assert state.claim_shard(job_id, 0, LEASE, 2)[0] == "run"
        age(job_id, LEASE + 5)  # the worker died: its lease runs out
    assert state.claim_shard(job_id, 0, LEASE, 2) == ("exhausted", (0, 16))


def test_stale_jobs_and_adoption(make_job: Callable[..., str]) -> None:
    working = started(make_job)
    state.create_shards(working, [(0, 16), (16, 32)])
    state.claim_shard(working, 0, LEASE, 3)
    waiting = started(make_job)  # its next task waits in the queue: nothing running
    queued = make_job()
    assert state.stale_jobs(LEASE) == []

    for job_id in (working, waiting, queued):
        age(job_id, LEASE + 5)
    assert state.stale_jobs(LEASE) == [working]
    assert set(state.stale_jobs(LEASE, idle_after_seconds=LEASE)) == {working, waiting, queued}
    assert state.stale_jobs(LEASE, idle_after_seconds=LEASE * 10) == [working]

    assert state.claim_orphan(working, LEASE)
    assert not state.claim_orphan(working, LEASE)  # only one sweeper adopts it
    with session_scope() as s:
        assert [r.status for r in s.query(JobShard).filter_by(job_id=working).order_by(JobShard.index)] == [
            "pending",
            "pending",
        ]
    assert state.stale_jobs(LEASE) == []
