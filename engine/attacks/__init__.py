"""Crafting: turn a checkpoint ensemble and class means into perturbations δ.

``craft`` processes images in fixed batches whose random draws are seeded by
(seed, index of the batch's first image), so a dataset crafted in shards on many workers
gives exactly the result of one pass.
"""

import torch
from torch import nn

from engine.attacks.base import Attack
from engine.attacks.class_pattern import class_patterns
from engine.attacks.random_noise import RandomNoise
from engine.attacks.sep import SEP
from engine.attacks.sep_fa import SEPFA
from engine.attacks.sep_fa_vr import SEPFAVR
from engine.config import ProtectConfig
from engine.device import to_float
from engine.features import target_classes
from engine.memory_probe import fit_batch, free_memory, member_bytes_per_image
from engine.methods import method
from engine.progress import Progress, no_progress

# the attack class of every method of engine.methods.METHODS
ATTACKS: dict[str, type[Attack]] = {
    "sep-fa-vr": SEPFAVR,
    "sep-fa": SEPFA,
    "sep": SEP,
    "single-fa": SEPFA,
    "random": RandomNoise,
}


def build_attack(nets: list[nn.Module], means: torch.Tensor | None, cfg: ProtectConfig, device: torch.device) -> Attack:
    """The attack object of ``cfg.method`` over the given checkpoint ensemble."""
    row = method(cfg.method)
    if row.last_member_only:
        nets, means = nets[-1:], (means[-1:] if means is not None else None)
    extra = {"inner_steps": cfg.inner_steps} if row.variance_reduced else {}
    return ATTACKS[row.name](
        nets if row.needs_surrogate else [],
        means if row.needs_means else None,
        # the class pattern takes its share of the budget; the attack crafts in the rest
        eps=cfg.eps - cfg.class_pattern,
        alpha=cfg.alpha,
        steps=cfg.steps,
        device=device,
        augment=cfg.augment,
        alpha_final=cfg.alpha_final or None,
        balance=cfg.balance,
        gray=cfg.gray,
        ce_weight=cfg.ce_weight,
        lowres=cfg.lowres,
        **extra,
    )


def passes_per_image(cfg: ProtectConfig, k: int) -> int:
    """Forward+backward passes per image of ``cfg.method`` with ``k`` checkpoints."""
    return method(cfg.method).passes_per_image(cfg.steps, k, cfg.inner_steps)


def craft(
    nets: list[nn.Module],
    means: torch.Tensor | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    cfg: ProtectConfig,
    device: torch.device,
    start_index: int = 0,
    progress: Progress = no_progress,
) -> torch.Tensor:
    """δ for uint8 ``images`` (N,3,R,R): float16 on the CPU, values in [−ε/255, ε/255].

    ``start_index`` is the position of ``images[0]`` in the whole dataset (seeds the batches).
    """
    n = len(images)
    delta = torch.empty(images.shape, dtype=torch.float16)
    targets_all = target_classes(labels, num_classes)
    attack = build_attack(nets, means, cfg, device)
    patterns = (
        class_patterns(num_classes, images.shape[-1], cfg.class_pattern, cfg.seed) if cfg.class_pattern > 0 else None
    )
    batch = cfg.craft_batch
    if attack.nets:
        # each image also holds x0, x, the accumulated direction and K member gradients (VR)
        state = (len(attack.nets) + 4) * images[0].numel() * 4
        per_image = member_bytes_per_image(attack.nets[0], device, images.shape[-1]) + state
        batch = fit_batch(cfg.craft_batch, per_image, free_memory(device))
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + start_index + lo)
        x0 = to_float(images[lo:hi], device)
        # the class pattern (when asked for) moves the starting point; the rest of ε is crafted around it
        base = x0 if patterns is None else (x0 + patterns[labels[lo:hi]].to(device)).clamp_(0, 1)

        def step_progress(done_steps: int, lo: int = lo, hi: int = hi) -> None:
            progress("craft", lo + (hi - lo) * done_steps // (cfg.steps + 1), n)

        attack.on_step = step_progress
        adv = attack(base, targets_all[lo:hi].to(device), gen)
        delta[lo:hi] = (adv - x0).float().cpu().half()
        progress("craft", hi, n)
    return delta
