"""Step 1 of SEP: train the surrogate and keep K checkpoints spread over its run.

SEP trains ONE surrogate. ``cfg.arch`` may also name several zoo architectures joined by ``+``
(e.g. ``resnet18+mobilenet``): each is trained in turn with the same recipe and the K checkpoints
are split among their runs (the first architectures get the remainder), so the ensemble holds
checkpoints of more than one family for the same number of crafting passes.
"""

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

import models
from engine.config import ProtectConfig
from engine.progress import Progress, no_progress
from engine.training import TrainSettings, steps_per_epoch, train_classifier


@dataclass
class SurrogateRun:
    checkpoints: list[dict[str, Any]]  # models.save_checkpoint dicts (config + weights + step/epoch)
    history: list[dict[str, Any]]  # per epoch: loss, train accuracy


def snapshot_schedule(total_steps: int, k: int) -> list[int]:
    """K optimiser steps evenly spread over the run, the last one at the end.

    The reference keeps checkpoints over the whole run (early, middle, late); their
    gradients are nearly orthogonal, which is what makes the self-ensemble diverse.
    """
    k = min(k, total_steps)
    return sorted({max(1, round(total_steps * (i + 1) / k)) for i in range(k)})


def checkpoint_split(archs: list[str], k: int) -> list[int]:
    """How many of the K checkpoints each architecture's run keeps (the first ones get the remainder)."""
    return [k // len(archs) + (1 if i < k % len(archs) else 0) for i in range(len(archs))]


def train_surrogate(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    cfg: ProtectConfig,
    device: torch.device,
    progress: Progress = no_progress,
) -> SurrogateRun:
    """Train each of ``cfg.archs`` at ``cfg.width`` on uint8 images; return K checkpoints and the history."""
    settings = TrainSettings(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed
    )
    per_run = steps_per_epoch(len(images), cfg.batch_size) * cfg.epochs
    archs = cfg.archs
    checkpoints: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []

    def keep(model: nn.Module, step: int, epoch: int) -> None:
        checkpoints.append(models.save_checkpoint(cast(models.Net, model), step=step, epoch=epoch))

    for run, (arch, k) in enumerate(zip(archs, checkpoint_split(archs, cfg.checkpoints))):
        torch.manual_seed(cfg.seed)
        net = models.build_model(arch, num_classes=num_classes, width=cfg.width)

        def run_progress(stage: str, done: int, total: int, offset: int = run * per_run) -> None:
            progress(stage, offset + done, len(archs) * per_run)

        steps = snapshot_schedule(per_run, k)
        run_history = train_classifier(
            net, images, labels, settings, device, snapshot_steps=set(steps), on_snapshot=keep, progress=run_progress
        )
        history += [{"arch": arch, **h} for h in run_history] if len(archs) > 1 else run_history
    return SurrogateRun(checkpoints=checkpoints, history=history)
