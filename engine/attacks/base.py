"""Base class of the crafting attacks: eval-mode frozen members, the ε-ball projection, batching.

Chen et al., "Self-Ensemble Protection: Training Checkpoints are Good Data Protectors", ICLR 2023:
every SEP variant is projected sign-gradient descent inside the ℓ∞ ball of radius ε.
"""

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import crop_flip, half_resolution, luma
from engine.batchnorm_folding import freeze
from engine.device import autocast, memory_format


class Attack:
    """Projected sign-gradient DESCENT on a loss that pulls images towards their target class.

    Subclasses implement ``forward(images, targets) -> adversarial images``.
    Images are float in [0, 1] on the device; members are frozen so backward passes compute
    gradients for the input only.

    ``augment``: every member pass sees a random crop+flip of x+δ (expectation over
    transformation), so that δ keeps working when the victim trains with the same augmentation.
    ``alpha_final``: when set, the step size decays linearly from ``alpha`` to it over the T steps
    (large early steps fill the ε-ball fast, small late steps refine).
    ``balance``: every member's input gradient is scaled to mean |g| = 1 per image before the
    ensemble combines them; otherwise the checkpoints whose features (FA) or logits (CE) have the
    largest scale dominate the sign of the mean.
    ``gray``: the fraction of member passes (drawn per image) that see the gray (luma) version of
    x+δ, so that δ also carries its effect in luminance and survives grayscale training.
    ``lowres``: the fraction of member passes (drawn per image) that see x+δ at half resolution
    (2x2 averaged, stretched back), so that δ also has low-frequency energy: what networks that
    downsample early (MobileNetV2's stride-2 stem) and re-compression keep.
    ``ce_weight``: feature-alignment losses add this weight times the targeted cross-entropy
    (both terms as logarithms, so neither one's scale decides the mix; see ``FeatureAlignment``).
    """

    def __init__(
        self,
        nets: list[nn.Module],
        means: torch.Tensor | None,
        eps: float,
        alpha: float,
        steps: int,
        device: torch.device,
        augment: bool = False,
        alpha_final: float | None = None,
        balance: bool = False,
        gray: float = 0.0,
        ce_weight: float = 0.0,
        lowres: float = 0.0,
    ) -> None:
        # members and their inputs in the device's memory format (engine.device's speed settings)
        self.nets = [freeze(n, device) for n in nets]
        self.memory_format = memory_format(device)
        self.means = means.to(device) if means is not None else None
        self.eps = eps / 255
        self.alpha = alpha / 255
        self.alpha_final = alpha_final / 255 if alpha_final is not None else None
        self.steps = steps
        self.device = device
        self.augment = augment
        self.balance = balance
        self.gray = gray
        self.ce_weight = ce_weight
        self.lowres = lowres
        self.generator: torch.Generator | None = None  # set per batch by __call__ (seeded draws)
        # called with the number of finished outer steps: progress (and cancellation) within a batch
        self.on_step: Callable[[int], None] = _ignore

    def step_size(self, t: int) -> float:
        """α at outer step t (0-based): constant, or linear from α to α_final."""
        if self.alpha_final is None or self.steps == 1:
            return self.alpha
        return self.alpha + (self.alpha_final - self.alpha) * t / (self.steps - 1)

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Back into the ℓ∞ ball of radius ε around x0, and into the image range [0, 1]."""
        return torch.min(torch.max(x, x0 - self.eps), x0 + self.eps).clamp_(0, 1)

    def step(
        self, x: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, alpha: float | None = None
    ) -> torch.Tensor:
        return self.project(x - (self.alpha if alpha is None else alpha) * direction.sign(), x0)

    def member_loss(self, k: int, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def some_images(
        self, view: torch.Tensor, fraction: float, transform: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """``view`` with ``transform`` applied to a seeded random ``fraction`` of its images."""
        if fraction <= 0:
            return view
        pick = torch.rand(len(view), generator=self.generator) < fraction
        return torch.where(pick.to(view.device).view(-1, 1, 1, 1), transform(view), view)

    def member_grad(self, k: int, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Gradient of member k's loss w.r.t. the input only (one forward + backward pass)."""
        x = x.detach().requires_grad_(True)
        view = crop_flip(x, generator=self.generator) if self.augment else x
        view = self.some_images(view, self.gray, lambda v: luma(v).expand_as(v))
        view = self.some_images(view, self.lowres, half_resolution)
        with autocast(self.device):
            loss = self.member_loss(k, view.contiguous(memory_format=self.memory_format), targets)
        grad = torch.autograd.grad(loss, x)[0].float().contiguous()
        if self.balance:
            grad /= grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        return grad

    def ensemble_grad(self, x: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        return [self.member_grad(k, x, targets) for k in range(len(self.nets))]

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # One generator per crafting batch, seeded by the batch's position: shards reproduce one pass.
        self.generator = generator
        try:
            return self.forward(images.contiguous(), targets)
        finally:
            self.generator = None


class FeatureAlignment(Attack):
    """Loss of member k: squared distance of its penultimate feature to the target class mean μ_k[t].

    With ``ce_weight`` w > 0, per image: log ‖f − μ_k[t]‖² + w · log CE(logits, t), from the same
    forward pass. The logarithms make each term's gradient a relative rate of decrease, so the mix
    does not depend on the scale of a checkpoint's features or logits.
    """

    def member_loss(self, k: int, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        f = self.nets[k].features(x)  # type: ignore[operator]  # a models.Net
        mu = cast(torch.Tensor, self.means)[k, :, : f.shape[1]]  # a narrower member's means, unpadded
        distance = (f.float() - mu[targets]).pow(2).sum(1)
        if self.ce_weight <= 0:
            total: torch.Tensor = distance.sum()
            return total
        ce = F.cross_entropy(self.nets[k].classifier(f).float(), targets, reduction="none")  # type: ignore[operator]
        mixed: torch.Tensor = (distance.clamp_min(1e-12).log() + self.ce_weight * ce.clamp_min(1e-12).log()).sum()
        return mixed


class EnsembleDescent(Attack):
    """Plain ensemble descent: every step moves along the mean gradient of all members."""

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x0 = images
        x = images.clone()
        for t in range(self.steps):
            grads = self.ensemble_grad(x, targets)
            x = self.step(x, x0, torch.stack(grads).mean(0), self.step_size(t))
            self.on_step(t + 1)
        return x


def _ignore(done_steps: int) -> None:
    """Default step callback: nothing to report."""
