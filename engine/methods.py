"""The table of crafting methods: one row per method, read by every part that needs to know one.

Torch-free, so that the service (forms, job planning) can read it without loading torch; the
attack class of each method is looked up by name in ``engine.attacks.ATTACKS``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # shown to people (web form)
    needs_surrogate: bool  # trains the surrogate and keeps its checkpoints
    needs_means: bool  # feature alignment: class-mean features per checkpoint
    last_member_only: bool = False  # the single-model baseline: the last checkpoint alone
    variance_reduced: bool = False  # M inner steps per outer step (SVRE)

    def passes_per_image(self, steps: int, checkpoints: int, inner_steps: int) -> int:
        """Forward+backward passes per image: T·K, T·(K+M) with variance reduction, T for one member."""
        if not self.needs_surrogate:
            return 0
        members = 1 if self.last_member_only else checkpoints
        return steps * (members + (inner_steps if self.variance_reduced else 0))


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sep-fa-vr", "SEP-FA-VR (recommended)", True, True, variance_reduced=True),
        Method("sep-fa", "SEP-FA", True, True),
        Method("sep", "SEP", True, False),
        Method("single-fa", "Single checkpoint (baseline)", True, True, last_member_only=True),
        Method("random", "Random noise (baseline)", False, False),
    )
}


def method(name: str) -> Method:
    """The row of ``name``; a clear error naming the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
