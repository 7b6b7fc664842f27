"""Supervised training of a classifier on an image tensor resident on the device.

Used for the surrogate (whose checkpoints form the SEP ensemble) and for victims in evaluation.
Recipe: SGD + Nesterov momentum, weight decay, crop+flip augmentation, and a triangular learning
rate (linear warm-up over the first 15% of steps, linear decay to zero). The triangular schedule
reaches in a few epochs what the reference's step schedule needs 120 epochs for, which is what
makes CPU-sized runs useful.
"""

from collections.abc import Callable
from dataclasses import dataclass

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


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps per epoch; a last batch of one image is dropped (BatchNorm needs two)."""
    return max(1, n // batch_size + (1 if n % batch_size >= 2 else 0))


def triangular_lr(step: int, total: int, warmup: float) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: linear up, then linear down to 0."""
    peak = max(1, int(total * warmup))
    if step < peak:
        return (step + 1) / peak
    return max(0.0, (total - step) / max(1, total - peak))


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
) -> list[dict]:
    """Train ``net`` in place on uint8 ``images`` (N,3,H,W) and int64 ``labels``.

    ``on_snapshot(net, step, epoch)`` is called after each optimiser step listed in
    ``snapshot_steps`` (1-based). Returns one dict per epoch: loss, train accuracy.
    """
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    net.to(device=device, memory_format=memory_format(device)).train()
    images = images.to(device)
    labels = labels.to(device)
    n = len(images)
    per_epoch = steps_per_epoch(n, settings.batch_size)
    total = per_epoch * settings.epochs
    decay, no_decay = [], []
    for p in net.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
        momentum=settings.momentum,
        nesterov=True,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: triangular_lr(s, total, settings.warmup))
    history: list[dict] = []
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
                loss = F.cross_entropy(logits, y)
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
        history.append(
            {"epoch": epoch, "loss": round(loss_sum.item() / n, 4), "train_acc": round(correct.item() / n, 4)}
        )
    net.eval()
    return history


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device, batch: int = 512) -> float:
    """Top-1 accuracy of ``net`` on uint8 ``images``."""
    net.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = images[i : i + batch].to(device).float().div_(255).contiguous(memory_format=memory_format(device))
        with autocast(device):
            correct += (net(x).argmax(1) == labels[i : i + batch].to(device)).sum().item()
    return correct / max(1, len(images))
