"""The stage plan: order, weights and progress offsets."""

import pytest

from app.jobs.plan import next_stage, plan_shards, progress_before, stage_order, stage_weights, task_id
from tests.worker.helpers import job_params


def test_order_puts_evaluation_before_packaging_only_when_asked() -> None:
    assert stage_order(job_params()) == ["ingest", "train", "means", "craft", "package"]
    assert stage_order(job_params(measure=True)) == ["ingest", "train", "means", "craft", "evaluate", "package"]


@pytest.mark.parametrize("method", ["sep-fa-vr", "sep-fa", "sep", "single-fa", "random"])
@pytest.mark.parametrize("measure", [False, True])
def test_weights_sum_to_one_and_offsets_increase(method: str, measure: bool) -> None:
    params = job_params(method=method, measure=measure)
    weights = stage_weights(params)
    assert list(weights) == stage_order(params)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert all(w >= 0 for w in weights.values())
    offsets = [progress_before(params, s) for s in stage_order(params)]
    assert offsets[0] == 0 and offsets == sorted(offsets)


def test_crafting_weighs_more_with_more_passes() -> None:
    light = stage_weights(job_params(steps=2, checkpoints=2, inner_steps=2))
    heavy = stage_weights(job_params(steps=20, checkpoints=8, inner_steps=8))
    assert heavy["craft"] > light["craft"]
    assert heavy["train"] < light["train"]


def test_victims_at_twice_the_resolution_weigh_four_times_more() -> None:
    """A victim at 2R costs 4x one at R: victims at R and 2R weigh 5x victims at R alone."""

    def evaluate_per_craft(victim_resolutions: list[int]) -> float:
        weights = stage_weights(job_params(measure=True, resolution=32) | {"victim_resolutions": victim_resolutions})
        return weights["evaluate"] / weights["craft"]

    assert evaluate_per_craft([32, 64]) == pytest.approx(5 * evaluate_per_craft([32]))


def test_next_stage_is_the_first_not_done() -> None:
    params = job_params()
    assert next_stage(params, set()) == "ingest"
    assert next_stage(params, {"ingest", "train"}) == "means"
    assert next_stage(params, {"ingest", "train", "means", "craft"}) == "package"
    assert next_stage(params, set(stage_order(params))) is None


def test_task_ids_are_deterministic() -> None:
    assert task_id("a" * 32, "train") == "a" * 32 + "-train"
    assert task_id("a" * 32, "craft", 3) == "a" * 32 + "-craft-3"


def test_shards_are_whole_crafting_batches() -> None:
    assert plan_shards(job_params(shard_size=16, craft_batch=16), 40) == [(0, 16), (16, 32), (32, 40)]
    assert plan_shards(job_params(shard_size=40, craft_batch=16), 70) == [(0, 32), (32, 64), (64, 70)]
    assert plan_shards(job_params(shard_size=8, craft_batch=16), 20) == [(0, 8), (8, 16), (16, 20)]
    assert plan_shards(job_params(), 0) == []
