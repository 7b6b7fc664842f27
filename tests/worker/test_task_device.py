"""Task processes share the machine's cores: torch threads per process."""

import multiprocessing

import pytest

from worker import task_device


@pytest.fixture
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_device, "cpu_count", lambda: 8)
    monkeypatch.setattr(task_device, "_worker_concurrency", 1)


def test_each_task_process_gets_its_share_of_the_cores(eight_cores: None) -> None:
    assert task_device.torch_threads() == 8
    task_device.set_worker_concurrency(3)
    assert task_device.torch_threads() == 2
    assert task_device.torch_threads(configured=5) == 5  # SEPGUARD_TORCH_THREADS wins
    task_device.set_worker_concurrency(None)  # a worker that does not say keeps the last count
    assert task_device.torch_threads() == 2


def test_forked_task_processes_inherit_the_worker_concurrency(eight_cores: None) -> None:
    task_device.set_worker_concurrency(4)  # what the worker does before forking its task processes
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(task_device.torch_threads) == 2


def test_packaging_threads_are_the_task_share(eight_cores: None) -> None:
    task_device.set_worker_concurrency(4)
    assert task_device.task_threads() == 2  # what package_task passes to stages.package
