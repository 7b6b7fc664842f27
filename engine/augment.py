"""Batched data augmentation as tensor ops on the device (no per-image Python loop)."""

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop after zero padding plus random horizontal flip, per image, for a whole batch.

    The standard CIFAR recipe (RandomCrop(32, padding=4) + RandomHorizontalFlip), written as one
    gather so that it costs a fraction of a forward pass.
    """
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(dev)
    flip = (torch.rand(n, generator=generator, device="cpu") < 0.5).to(dev)
    rows = dy[:, None] + torch.arange(h, device=dev)[None, :]  # (n, h)
    cols = dx[:, None] + torch.arange(w, device=dev)[None, :]  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded.gather(2, rows[:, None, :, None].expand(n, x.shape[1], h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(n, x.shape[1], h, w))


# ITU-R 601 luma weights: what a grayscale conversion (PIL's "L", the grayscale defence) computes
LUMA = (0.299, 0.587, 0.114)


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma of each pixel (differentiable)."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def half_resolution(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) averaged over 2x2 blocks and stretched back bilinearly (differentiable).

    What a network that downsamples early, or a victim training at half the size, sees of the
    image: the view keeps the low frequencies only.
    """
    h, w = x.shape[-2:]
    return F.interpolate(F.avg_pool2d(x, 2, ceil_mode=True), size=(h, w), mode="bilinear", align_corners=False)
