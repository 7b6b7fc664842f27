"""Which device a task uses and how many CPU threads torch may take.

Several task processes share a machine: each gets its share of the cores
(``SEPGUARD_TORCH_THREADS``, else cores / worker concurrency), so they do not oversubscribe.
"""

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CONCURRENCY_ENV = "SEPGUARD_WORKER_CONCURRENCY"
_configured = False


def set_worker_concurrency(concurrency: int | None) -> None:
    """Remember the worker's process count for its task processes (set before they fork)."""
    if concurrency:
        os.environ[CONCURRENCY_ENV] = str(int(concurrency))


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def torch_threads(configured: int | None = None) -> int:
    """Threads per task process."""
    if configured:
        return configured
    try:
        concurrency = max(1, int(os.environ.get(CONCURRENCY_ENV, "1")))
    except ValueError:
        concurrency = 1
    return max(1, cpu_count() // concurrency)


def task_device() -> "torch.device":
    """CUDA when present, else the CPU, with torch's thread pool sized once per process."""
    global _configured
    import torch

    from engine.device import pick_device
    from worker.settings import get_worker_settings

    if not _configured:
        torch.set_num_threads(torch_threads(get_worker_settings().torch_threads))
        _configured = True
    return pick_device()
