"""How many CPU cores this process may use (torch-free, for the engine and the worker alike)."""

import os


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask on Linux, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
