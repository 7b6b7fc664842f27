"""Training recipes: the learning-rate schedules and optimisers victims and the surrogate use."""

import pytest

from engine.training import SCHEDULES, TrainSettings, lr_multiplier


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_peaks_in_the_run_and_ends_near_zero(schedule: str) -> None:
    values = [lr_multiplier(schedule, s, 200, 0.15) for s in range(200)]
    assert max(values) == pytest.approx(1.0, abs=0.02)
    assert values[0] < 0.5 and values[-1] < 0.01
    assert 5 <= values.index(max(values)) < 100


def test_unknown_schedule_or_optimizer_is_named() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        TrainSettings(epochs=1, schedule="step")
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        TrainSettings(epochs=1, optimizer="adam")
