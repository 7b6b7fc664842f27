"""Baseline: uniform random noise in [−ε, ε] (shows what a perturbation of the same size does by chance)."""

import torch

from engine.attacks.base import Attack


class RandomNoise(Attack):
    """No surrogate, no gradient: x0 + U(−ε, ε), drawn from the batch's seeded generator."""

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        noise = (torch.rand(tuple(images.shape), generator=self.generator) * 2 - 1) * self.eps
        self.on_step(self.steps)
        return (images + noise.to(images.device)).clamp_(0, 1)
