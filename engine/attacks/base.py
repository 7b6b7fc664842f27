"""Base class of the crafting attacks: eval-mode frozen members, the ε-ball projection, batching."""

import torch
from torch import nn

from engine.device import autocast, freeze


class Attack:
    """Projected sign-gradient DESCENT on a loss that pulls images towards their target class.

    Subclasses implement ``forward(images, labels, targets, generator) -> adversarial images``.
    Images are float in [0, 1] on the device; members are frozen so backward passes compute
    gradients for the input only.
    """

    def __init__(
        self, nets: list[nn.Module], means: torch.Tensor | None, eps: float, alpha: float, steps: int, device: torch.device
    ) -> None:
        self.nets = [freeze(n, device) for n in nets]
        self.means = means.to(device) if means is not None else None
        self.eps = eps / 255
        self.alpha = alpha / 255
        self.steps = steps
        self.device = device

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Back into the ℓ∞ ball of radius ε around x0, and into the image range [0, 1]."""
        return torch.min(torch.max(x, x0 - self.eps), x0 + self.eps).clamp_(0, 1)

    def step(self, x: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return self.project(x - self.alpha * direction.sign(), x0)

    def member_loss(self, k: int, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def member_grad(self, k: int, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Gradient of member k's loss w.r.t. the input only (one forward + backward pass)."""
        x = x.detach().requires_grad_(True)
        with autocast(self.device):
            loss = self.member_loss(k, x, targets)
        return torch.autograd.grad(loss, x)[0].float()

    def ensemble_grad(self, x: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        return [self.member_grad(k, x, targets) for k in range(len(self.nets))]

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        return self.forward(images, labels, targets, generator)


class FeatureAlignment(Attack):
    """Loss of member k: squared distance of its penultimate feature to the target class mean μ_k[t]."""

    def member_loss(self, k: int, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        f = self.nets[k].features(x).float()
        return (f - self.means[k][targets]).pow(2).sum()


class EnsembleDescent(Attack):
    """Plain ensemble descent: every step moves along the mean gradient of all members."""

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        x0 = images
        x = images.clone()
        for _ in range(self.steps):
            grads = self.ensemble_grad(x, targets)
            x = self.step(x, x0, torch.stack(grads).mean(0))
        return x
