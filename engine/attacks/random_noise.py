"""Baseline: uniform random noise in [−ε, ε] (shows what a perturbation of the same size does by chance)."""

import torch


def random_delta(shape: tuple[int, ...], eps: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform noise in [−eps/255, eps/255]."""
    return (torch.rand(shape, generator=generator) * 2 - 1) * (eps / 255)
