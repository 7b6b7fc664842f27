"""Progress reporting shared by every stage: ``callback(stage, done, total)``."""

from collections.abc import Callable

Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """Default callback: report nothing."""
