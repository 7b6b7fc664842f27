"""Step 1 of SEP: train ONE surrogate and keep K checkpoints spread over its run."""

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


def train_surrogate(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    cfg: ProtectConfig,
    device: torch.device,
    progress: Progress = no_progress,
) -> SurrogateRun:
    """Train ``cfg.arch`` at ``cfg.width`` on uint8 images; return K checkpoints and the history."""
    torch.manual_seed(cfg.seed)
    net = models.build_model(cfg.arch, num_classes=num_classes, width=cfg.width)
    settings = TrainSettings(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed
    )
    per_epoch = steps_per_epoch(len(images), cfg.batch_size)
    steps = snapshot_schedule(per_epoch * cfg.epochs, cfg.checkpoints)
    checkpoints: list[dict[str, Any]] = []

    def keep(model: nn.Module, step: int, epoch: int) -> None:
        checkpoints.append(models.save_checkpoint(cast(models.Net, model), step=step, epoch=epoch))

    history = train_classifier(
        net, images, labels, settings, device, snapshot_steps=set(steps), on_snapshot=keep, progress=progress
    )
    return SurrogateRun(checkpoints=checkpoints, history=history)
