"""The worker's entry point turns the Celery application into a worker: tasks and signals."""

from pathlib import Path

from app.jobs.plan import TASK_NAMES
from tests.app.jobs.test_task_queue import run


def test_the_entry_point_registers_the_tasks_and_wires_the_signals(tmp_path: Path) -> None:
    seen = run("worker.main", tmp_path / "data")
    after = seen["after"]
    assert after["tasks"] == sorted(TASK_NAMES.values())
    assert after["receivers"] == 6  # thread pool, after fork, sweeper start/stop, presence start/stop
    assert after["polling"] == 0.2  # the embedded broker is polled often: shards start without idling
    assert not (tmp_path / "data").exists()  # created when the worker starts, not on import
