"""Supervised training of a classifier on an image tensor resident on the device.

Used for the surrogate (whose checkpoints form the SEP ensemble) and for victims in evaluation.
The surrogate's recipe (the default): SGD + Nesterov momentum, weight decay, crop+flip
augmentation, and a triangular learning rate (linear warm-up over the first 15% of steps, linear
decay to zero). The triangular schedule reaches in a few epochs what the reference's step schedule
needs 120 epochs for, which is what makes CPU-sized runs useful.

Victims (``engine.victims``) use other recipes on purpose, so that protection is measured against
training nobody tuned for: one-cycle or cosine schedules, AdamW, label smoothing.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import crop_flip
from engine.device import autocast, memory_format
from engine.progress import Progress, no_progress


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup: float = 0.15  # fraction of steps with a rising learning rate
    augment: bool = True
    seed: int = 0
    schedule: str = "triangular"  # "triangular" | "onecycle" | "cosine" (see ``lr_multiplier``)
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) | "adamw"
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose sgd or adamw")


SCHEDULES = ("triangular", "onecycle", "cosine")


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps per epoch; a last batch of one image is dropped (BatchNorm needs two)."""
    return max(1, n // batch_size + (1 if n % batch_size >= 2 else 0))


def triangular_lr(step: int, total: int, warmup: float) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: linear up, then linear down to 0."""
    peak = max(1, int(total * warmup))
    if step < peak:
        return (step + 1) / peak
    return max(0.0, (total - step) / max(1, total - peak))


def lr_multiplier(schedule: str, step: int, total: int, warmup: float) -> float:
    """Learning-rate multiplier at ``step`` of ``total`` for each schedule.

    - triangular: linear warm-up, linear decay to 0 (the surrogate's);
    - onecycle: cosine warm-up over the first 30% from 1/25 of the peak, cosine annealing to ~0
      (``torch.optim.lr_scheduler.OneCycleLR``'s shape, without its momentum cycling);
    - cosine: a short linear warm-up (5%), then cosine annealing to 0.
    """
    if schedule == "triangular":
        return triangular_lr(step, total, warmup)
    if schedule == "onecycle":
        peak = max(1, int(total * 0.3))
        if step < peak:
            return 0.04 + 0.96 * (1 - math.cos(math.pi * step / peak)) / 2
        return (1 + math.cos(math.pi * (step - peak) / max(1, total - peak))) / 2
    warm = max(1, int(total * 0.05))
    if step < warm:
        return (step + 1) / warm
    return (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))) / 2


def train_classifier(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: TrainSettings,
    device: torch.device,
    snapshot_steps: set[int] | None = None,
    on_snapshot: Callable[[nn.Module, int, int], None] | None = None,
    progress: Progress = no_progress,
    stage: str = "train",
    on_epoch: Callable[[nn.Module, int], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train ``net`` in place on uint8 ``images`` (N,3,H,W) and int64 ``labels``.

    ``on_snapshot(net, step, epoch)`` is called after each optimiser step listed in
    ``snapshot_steps`` (1-based). ``on_epoch(net, epoch)`` runs after every epoch (net in eval
    mode) and its dict joins that epoch's entry. Returns one dict per epoch: loss, train accuracy.
    """
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    net.to(device=device, memory_format=memory_format(device)).train()  # type: ignore[call-overload]  # memory_format is missing from torch's overloads
    images = images.to(device)
    labels = labels.to(device)
    n = len(images)
    per_epoch = steps_per_epoch(n, settings.batch_size)
    total = per_epoch * settings.epochs
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in net.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt: torch.optim.Optimizer
    if settings.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=settings.lr)
    else:
        opt = torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_multiplier(settings.schedule, s, total, settings.warmup)
    )
    history: list[dict[str, Any]] = []
    step = 0
    for epoch in range(1, settings.epochs + 1):
        order = torch.randperm(n, generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for b in range(per_epoch):
            idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            x = images[idx].float().div_(255)
            if settings.augment:
                x = crop_flip(x, generator=gen)
            x = x.contiguous(memory_format=memory_format(device))
            y = labels[idx]
            with autocast(device):
                logits = net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=settings.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y).sum()
            if snapshot_steps and step in snapshot_steps and on_snapshot is not None:
                net.eval()
                on_snapshot(net, step, epoch)
                net.train()
            progress(stage, step, total)
        entry = {"epoch": epoch, "loss": round(loss_sum.item() / n, 4), "train_acc": round(correct.item() / n, 4)}
        if on_epoch is not None:
            net.eval()
            entry.update(on_epoch(net, epoch))
            net.train()
        history.append(entry)
    net.eval()
    return history


@torch.no_grad()
def accuracy(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device, batch: int = 512
) -> float:
    """Top-1 accuracy of ``net`` on uint8 ``images``."""
    net.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = images[i : i + batch].to(device).float().div_(255).contiguous(memory_format=memory_format(device))
        with autocast(device):
            correct += (net(x).argmax(1) == labels[i : i + batch].to(device)).sum().item()
    return correct / max(1, len(images))
