"""Step 2 of SEP: class-mean penultimate features per checkpoint, and the target classes."""

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from engine.device import autocast, to_float


def target_classes(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The wrong class each image is pushed towards: t = (y + C // 2) mod C, as in the reference."""
    return (labels + num_classes // 2) % num_classes


@torch.no_grad()
def class_means(
    nets: list[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    device: torch.device,
    batch: int = 512,
) -> torch.Tensor:
    """Mean penultimate feature of every class for every net: (K, C, D), float32 on ``device``.

    Nets of different architectures may have features of different widths: D is the widest, and
    net k's means fill the first D_k columns of its row (zeros after them).

    Neural-collapse view: the class mean represents the class, so aligning an image's feature
    with the mean of a wrong class injects that class's features.
    """
    labels = labels.to(device)
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    out = []
    for net in nets:
        sums: torch.Tensor | None = None
        for i in range(0, len(images), batch):
            with autocast(device):
                f = net.features(to_float(images[i : i + batch], device)).float()  # type: ignore[operator]  # a models.Net
            if sums is None:
                sums = torch.zeros(num_classes, f.shape[1], device=device)
            sums.index_add_(0, labels[i : i + batch], f)
        out.append(cast(torch.Tensor, sums) / counts[:, None])
    width = max(m.shape[1] for m in out)
    return torch.stack([F.pad(m, (0, width - m.shape[1])) for m in out])
