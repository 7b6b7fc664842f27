"""ProtectConfig: presets, overrides, validation, and the round trip through a job's stored parameters."""

from typing import Any

import pytest

from engine.config import MAX_EPS, METHODS, PRESETS, ProtectConfig, preset
from engine.methods import METHODS as METHOD_TABLE


def test_presets_trade_time_for_strength() -> None:
    fast, balanced, paper = (preset(name) for name in PRESETS)
    for field in ("width", "epochs", "checkpoints", "steps"):
        assert getattr(fast, field) < getattr(balanced, field) < getattr(paper, field), field
    assert balanced.method == "sep-fa" and paper.method == "sep-fa-vr"  # the product is SEP-FA; paper is the paper's
    assert balanced.balance and balanced.gray == 0.5 and balanced.ce_weight == 4.0 and balanced.augment
    assert not fast.balance and not paper.balance
    assert paper.width == 64 and paper.shard_size == 5000  # the full-width reference settings
    assert preset() == balanced  # balanced is the default


def test_overrides_replace_preset_values_and_none_means_the_preset_value() -> None:
    cfg = preset("fast", eps=4.0, steps=None, method="sep")
    assert cfg.eps == 4.0 and cfg.method == "sep"
    assert cfg.steps == preset("fast").steps


def test_every_method_of_the_table_is_accepted() -> None:
    assert METHODS == tuple(METHOD_TABLE)
    for name in METHODS:
        assert ProtectConfig(method=name).method == name


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="fast, balanced, paper"):
        preset("quick")
    with pytest.raises(ValueError, match="sep-fa-vr"):
        ProtectConfig(method="pgd")
    with pytest.raises(ValueError, match="'bilinear' or 'nearest'"):
        ProtectConfig(upsample="bicubic")


@pytest.mark.parametrize(
    "bad",
    [
        {"eps": 0},
        {"eps": MAX_EPS + 1},
        {"output_format": "jpeg"},
        {"steps": 0},
        {"checkpoints": 0},
        {"resolution": 8},
        {"alpha": 0},
        {"alpha_final": -1},
        {"inner_steps": -1},
        {"gray": 1.5},
        {"ce_weight": -0.1},
        {"class_pattern": 8.0},  # the whole budget: nothing left to craft
        {"class_pattern": -1.0},
        {"holdout": 0},
        {"holdout": 1},
        {"jpeg_quality": 0},
        {"jpeg_quality": 101},
        {"arch": "resnet18+"},  # an empty architecture name
        {"arch": "resnet18+mobilenet", "checkpoints": 1},  # fewer checkpoints than architectures
    ],
)
def test_invalid_values_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ProtectConfig(**bad)


def test_the_budget_may_reach_max_eps() -> None:
    assert ProtectConfig(eps=MAX_EPS).eps == MAX_EPS
    assert ProtectConfig(class_pattern=7.9).class_pattern == 7.9  # just under eps


def test_the_crafting_batch_never_exceeds_a_shard() -> None:
    """Shards are whole multiples of the crafting batch; a small shard size asks for small batches."""
    assert ProtectConfig(craft_batch=256, shard_size=100).craft_batch == 100
    assert ProtectConfig(craft_batch=64, shard_size=512).craft_batch == 64


def test_stored_parameters_round_trip_and_unknown_keys_are_ignored() -> None:
    cfg = preset("balanced", seed=5, eps=6.0)
    assert ProtectConfig.from_dict(cfg.to_dict()) == cfg
    # a job stored by another version: a field this one does not know (strip_metadata, the preset)
    stored = {**cfg.to_dict(), "strip_metadata": True, "preset": "balanced"}
    assert ProtectConfig.from_dict(stored) == cfg
    assert ProtectConfig.from_dict({"eps": 4.0}) == ProtectConfig(eps=4.0)  # missing fields take defaults


def test_the_surrogate_may_name_several_architectures() -> None:
    assert ProtectConfig(arch="resnet18 + mobilenet").archs == ["resnet18", "mobilenet"]
    assert ProtectConfig().archs == ["resnet18"]
