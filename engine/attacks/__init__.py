"""Crafting: turn a checkpoint ensemble and class means into perturbations δ.

``craft`` processes images in fixed batches whose random draws are seeded by
(seed, index of the batch's first image), so a dataset crafted in shards on many workers
gives exactly the result of one pass.
"""

import torch
from torch import nn

from engine.attacks.base import Attack
from engine.attacks.class_pattern import class_patterns
from engine.attacks.random_noise import random_delta
from engine.attacks.sep import SEP
from engine.attacks.sep_fa import SEPFA
from engine.attacks.sep_fa_vr import SEPFAVR
from engine.config import ProtectConfig
from engine.device import fit_batch, free_memory, member_bytes_per_image, to_float
from engine.features import target_classes
from engine.progress import Progress, no_progress


def build_attack(nets: list[nn.Module], means: torch.Tensor | None, cfg: ProtectConfig, device: torch.device) -> Attack:
    """The attack object of ``cfg.method`` over the given checkpoint ensemble."""
    common = dict(
        eps=cfg.eps, alpha=cfg.alpha, steps=cfg.steps, device=device, augment=cfg.augment,
        alpha_final=cfg.alpha_final or None, balance=cfg.balance, gray=cfg.gray, ce_weight=cfg.ce_weight,
    )
    # the class pattern takes its share of the budget; the attack crafts in the rest
    common["eps"] = cfg.eps - cfg.class_pattern
    if cfg.method == "sep":
        return SEP(nets, None, **common)
    if cfg.method == "sep-fa":
        return SEPFA(nets, means, **common)
    if cfg.method == "single-fa":
        return SEPFA(nets[-1:], means[-1:], **common)
    if cfg.method == "sep-fa-vr":
        return SEPFAVR(nets, means, inner_steps=cfg.inner_steps, **common)
    raise ValueError(f"method {cfg.method!r} does not use an ensemble attack")


def passes_per_image(cfg: ProtectConfig, k: int) -> int:
    """Forward+backward passes per image of a method: T·K, T·(K+M) for VR, T for single-fa."""
    if cfg.method == "random":
        return 0
    if cfg.method == "single-fa":
        return cfg.steps
    return cfg.steps * (k + (cfg.inner_steps if cfg.method == "sep-fa-vr" else 0))


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
    attack = None if cfg.method == "random" else build_attack(nets, means, cfg, device)
    patterns = (
        class_patterns(num_classes, images.shape[-1], cfg.class_pattern, cfg.seed) if cfg.class_pattern > 0 else None
    )
    batch = cfg.craft_batch
    if attack is not None:
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
        if attack is None:
            noise = random_delta(tuple(images[lo:hi].shape), cfg.eps - cfg.class_pattern, gen).to(device)
            delta[lo:hi] = ((base + noise).clamp_(0, 1) - x0).cpu().half()
        else:

            def step_progress(done_steps: int, lo: int = lo, hi: int = hi) -> None:
                progress("craft", lo + (hi - lo) * done_steps // (cfg.steps + 1), n)

            attack.on_step = step_progress
            adv = attack(base, labels[lo:hi].to(device), targets_all[lo:hi].to(device), gen)
            delta[lo:hi] = (adv - x0).float().cpu().half()
        progress("craft", hi, n)
    return delta
