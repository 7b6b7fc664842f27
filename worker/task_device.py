"""Which device a task uses and how many CPU threads torch may take.

Several task processes share a machine: each gets its share of the cores
(``SEPGUARD_TORCH_THREADS``, else cores / worker concurrency), so they do not oversubscribe.
"""

from typing import TYPE_CHECKING

from app.core.config import get_settings
from engine.cpus import cpu_count

if TYPE_CHECKING:
    import torch

# The worker's process count, set by the worker process before it forks its task processes
# (which inherit it): see worker.main.
_worker_concurrency = 1
_configured = False


def set_worker_concurrency(concurrency: int | None) -> None:
    """Remember the worker's process count for its task processes (set before they fork)."""
    global _worker_concurrency
    if concurrency:
        _worker_concurrency = max(1, int(concurrency))


def torch_threads(configured: int | None = None) -> int:
    """Threads per task process."""
    if configured:
        return configured
    return max(1, cpu_count() // _worker_concurrency)


def task_threads() -> int:
    """This task process's share of the cores: torch's threads, and packaging's."""
    return torch_threads(get_settings().torch_threads)


def task_device() -> "torch.device":
    """CUDA when present, else the CPU, with torch's thread pool sized once per process."""
    global _configured
    # torch and engine.device (which imports it) load in the task process on first use, not at
    # worker start-up
    import torch

    from engine.device import pick_device

    if not _configured:
        torch.set_num_threads(task_threads())
        _configured = True
    return pick_device()
