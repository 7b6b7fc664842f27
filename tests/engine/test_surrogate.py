import torch

import models
from engine.config import preset
from engine.surrogate import checkpoint_split, snapshot_schedule, train_surrogate
from engine.training import steps_per_epoch, triangular_lr


def test_snapshot_schedule_spreads_checkpoints_over_the_run() -> None:
    steps = snapshot_schedule(100, 4)
    assert steps == [25, 50, 75, 100]
    assert snapshot_schedule(3, 8) == [1, 2, 3]  # never more checkpoints than steps


def test_triangular_lr_rises_then_falls_to_zero() -> None:
    values = [triangular_lr(s, 100, 0.2) for s in range(100)]
    peak = values.index(max(values))
    assert max(values) == 1.0 and 15 <= peak <= 20
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1]))
    assert values[-1] < 0.02


def test_steps_per_epoch_drops_a_single_leftover_image() -> None:
    assert steps_per_epoch(257, 128) == 2
    assert steps_per_epoch(258, 128) == 3


def test_surrogate_keeps_k_distinct_checkpoints_that_rebuild_alone(sample_set) -> None:
    images, labels = sample_set
    cfg = preset("fast", width=8, epochs=2, checkpoints=3, batch_size=32)
    run = train_surrogate(images, labels, 10, cfg, torch.device("cpu"))
    assert len(run.checkpoints) == 3 and len(run.history) == 2
    assert run.checkpoints[-1]["epoch"] == 2
    nets = [models.load_checkpoint(c) for c in run.checkpoints]
    x = images[:8].float() / 255
    outs = [n(x) for n in nets]
    assert not torch.allclose(outs[0], outs[-1])  # checkpoints from different points of the run
    assert (
        run.history[-1]["loss"] < run.history[0]["loss"] or run.history[-1]["train_acc"] >= run.history[0]["train_acc"]
    )


def test_surrogate_training_is_repeatable_with_a_seed(sample_set) -> None:
    images, labels = sample_set
    cfg = preset("fast", width=8, epochs=1, checkpoints=1, batch_size=40)
    a = train_surrogate(images, labels, 10, cfg, torch.device("cpu")).checkpoints[-1]["state_dict"]
    b = train_surrogate(images, labels, 10, cfg, torch.device("cpu")).checkpoints[-1]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_are_split_among_the_architectures() -> None:
    assert checkpoint_split(["resnet18"], 8) == [8]
    assert checkpoint_split(["resnet18", "mobilenet"], 8) == [4, 4]
    assert checkpoint_split(["resnet18", "mobilenet", "vgg16"], 8) == [3, 3, 2]


def test_a_two_architecture_surrogate_keeps_checkpoints_of_both_runs(sample_set) -> None:
    images, labels = sample_set
    progress: list[tuple[int, int]] = []
    cfg = preset("fast", arch="resnet18+mobilenet", width=8, epochs=2, checkpoints=3, batch_size=32)
    run = train_surrogate(images, labels, 10, cfg, torch.device("cpu"), lambda s, d, t: progress.append((d, t)))
    assert [c["arch"] for c in run.checkpoints] == ["resnet18", "resnet18", "mobilenet"]
    assert [c["epoch"] for c in run.checkpoints] == [1, 2, 2]  # each run's share spread over that run
    assert [h["arch"] for h in run.history] == ["resnet18"] * 2 + ["mobilenet"] * 2
    assert isinstance(models.load_checkpoint(run.checkpoints[-1]), models.MobileNetV2)
    done = [d for d, _ in progress]
    assert done == sorted(done) and progress[-1][0] == progress[-1][1]  # one progress bar over both runs
