"""Victim networks and their training: the catalogue's entries (``engine.victim_catalogue``) made real.

The held-out architectures outside the zoo live here and nowhere else: the surrogate can never be
one of them, so a setting cannot be tuned to them by accident.
"""

from typing import Any, cast

import torch
import torchvision
from torch import nn

import models
from engine.progress import Progress, no_progress
from engine.training import TrainSettings, accuracy, train_classifier
from engine.victim_catalogue import Victim

Split = tuple[torch.Tensor, torch.Tensor]  # uint8 images (N,3,R,R), int64 labels


def convnet(num_classes: int, width: int) -> nn.Sequential:
    """A plain VGG-style CNN (three stages of two 3x3 conv + BN + ReLU, max-pooling between)."""
    layers: list[nn.Module] = []
    channels = 3
    for stage, out in enumerate((width, 2 * width, 4 * width)):
        for _ in range(2):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        layers.append(nn.MaxPool2d(2) if stage < 2 else nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers, nn.Flatten(1), nn.Linear(channels, num_classes))


def mobilenet_v2(num_classes: int, width_mult: float) -> nn.Module:
    """torchvision's MobileNetV2 with a stride-1 stem, the usual adaptation to 32-pixel images."""
    net = torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=width_mult)
    net.features[0][0].stride = (1, 1)
    return cast(nn.Module, net)


class Standardize(nn.Module):
    """Per-channel standardisation with statistics of the training set (as a practitioner computes)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1).clamp_min(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build(victim: Victim, num_classes: int, train_images: torch.Tensor) -> nn.Module:
    """A freshly initialised network for ``victim`` (inputs in [0, 1])."""
    if victim.arch == "convnet":
        net: nn.Module = convnet(num_classes, int(victim.width))
    elif victim.arch == "mobilenetv2":
        net = mobilenet_v2(num_classes, victim.width)
    else:
        net = models.build_model(victim.arch, num_classes=num_classes, width=int(victim.width))
    if not victim.standardize:
        return net
    x = train_images.float().div(255)
    return nn.Sequential(Standardize(x.mean((0, 2, 3)), x.std((0, 2, 3))), net)


def train_victim(
    victim: Victim,
    train: Split,
    test: Split,
    num_classes: int,
    seed: int,
    device: torch.device,
    progress: Progress = no_progress,
    stage: str = "evaluate",
) -> dict[str, Any]:
    """Train ``victim`` from scratch on ``train``; clean ``test`` accuracy after the last and the best epoch."""
    torch.manual_seed(seed)
    net = build(victim, num_classes, train[0])
    settings = TrainSettings(
        epochs=victim.epochs,
        batch_size=victim.batch_size,
        lr=victim.lr,
        weight_decay=victim.weight_decay,
        seed=seed,
        schedule=victim.schedule,
        optimizer=victim.optimizer,
        label_smoothing=victim.label_smoothing,
    )

    def test_acc(model: nn.Module, epoch: int) -> dict[str, Any]:
        return {"test_acc": round(accuracy(model, test[0], test[1], device), 4)}

    history = train_classifier(
        net, train[0], train[1], settings, device, progress=progress, stage=stage, on_epoch=test_acc
    )
    return {
        "victim": victim.name,
        "arch": victim.arch,
        "seed": seed,
        "test_acc": history[-1]["test_acc"],
        "best_test_acc": max(h["test_acc"] for h in history),
        "train_acc": history[-1]["train_acc"],
    }
