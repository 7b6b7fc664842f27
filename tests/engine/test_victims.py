"""The victim catalogue and its networks: held-out victims differ from the tuning set in
architecture, length and recipe, and each one really trains."""

import pytest
import torch

import models
from engine.victim_catalogue import CATALOGUE, DIAGNOSTIC, HELD_OUT, TUNING, resolve
from engine.victims import build, train_victim


def test_held_out_set_differs_from_the_tuning_set_in_what_matters() -> None:
    tuning_archs = {v.arch for v in TUNING}
    assert {v.arch for v in HELD_OUT} - set(models.ARCHS), "an architecture family outside the zoo"
    assert not {v.name for v in HELD_OUT} & {v.name for v in TUNING}
    assert {30, 60} <= {v.epochs for v in HELD_OUT} and max(v.epochs for v in TUNING) < 30
    assert {v.schedule for v in HELD_OUT} >= {"onecycle", "cosine"} and {v.schedule for v in TUNING} == {"triangular"}
    assert all(v.label_smoothing > 0 and v.standardize for v in HELD_OUT)
    assert tuning_archs <= set(models.ARCHS)


def test_diagnostic_victims_swap_only_the_optimiser_recipe_of_two_held_out_ones() -> None:
    by_arch = {v.arch: v for v in HELD_OUT}
    recipe = ("optimizer", "lr", "weight_decay")
    for victim in DIAGNOSTIC:
        held_out = by_arch[victim.arch]
        assert victim.name not in {v.name for v in (*HELD_OUT, *TUNING)}
        assert victim.optimizer != held_out.optimizer
        others = [f for f in held_out.__dataclass_fields__ if f not in (*recipe, "name")]
        assert all(getattr(victim, f) == getattr(held_out, f) for f in others)
    assert {v.optimizer for v in DIAGNOSTIC} == {"sgd", "adamw"}
    assert resolve("diagnostic") == list(DIAGNOSTIC)


def test_resolve_expands_sets_and_names_unknown_victims() -> None:
    assert resolve("held-out") == list(HELD_OUT)
    assert [v.name for v in resolve("tuning,convnet-60ep")] == [*(v.name for v in TUNING), "convnet-60ep"]
    assert all(v.epochs == 2 for v in resolve("held-out", epochs=2))
    with pytest.raises(ValueError, match="unknown victim 'alexnet'"):
        resolve("alexnet")
    with pytest.raises(ValueError, match="no victims"):
        resolve(" , ")


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_victim_builds_and_classifies_32_pixel_images(name: str) -> None:
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    net = build(CATALOGUE[name], num_classes=10, train_images=images).eval()
    with torch.no_grad():
        assert net(images.float() / 255).shape == (4, 10)


def test_standardisation_uses_the_training_sets_statistics() -> None:
    images = torch.full((8, 3, 32, 32), 200, dtype=torch.uint8)
    images[:, 1] = 50
    net = build(CATALOGUE["convnet-60ep"], 10, images)
    first = net[0]
    assert torch.allclose(first.mean.flatten(), torch.tensor([200, 50, 200]) / 255)


def test_a_held_out_victim_learns_separable_data_and_reports_its_best_epoch() -> None:
    """Two classes told apart by brightness: the one-cycle, label-smoothed convnet learns them."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    images = (torch.rand(64, 3, 32, 32, generator=gen) * 60 + 40 + 120 * labels.view(-1, 1, 1, 1)).to(torch.uint8)
    victim = resolve("convnet-60ep", epochs=6)[0]
    result = train_victim(victim, (images, labels), (images, labels), 2, seed=0, device=torch.device("cpu"))
    assert result["best_test_acc"] >= result["test_acc"] >= 0.9
    assert result["victim"] == "convnet-60ep" and result["seed"] == 0
