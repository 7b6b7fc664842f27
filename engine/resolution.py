"""The working resolution R: the square size every image is crafted at, chosen from the data.

Policy (``choose_resolution``): the median short side of the images, rounded down to a multiple
of 16, clamped to [32, cap], where the cap belongs to the preset; images smaller than 32 px are
worked on at 32 px. A median is robust to a few huge outliers, and the short side never asks for
more detail than most images have.

Aspect ratio: every image is squashed to R x R, whatever its shape, and δ is stretched back to
each image's own size when packaging. That is the current choice, kept from the fixed-R days; it
has not yet been measured against crafting on a crop or a padded copy.

Victims (``victim_resolutions``) train at R and, when most images have the detail for it, at 2R:
a trainer of photographs trains at 64-224 px on the downloaded images, not at the crafting copy's R.

Torch-free: the API chooses R when it checks an upload.
"""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from engine.config import ProtectConfig

MIN_RESOLUTION = 32  # no image is crafted smaller than CIFAR's 32 x 32
STEP = 16  # R is a multiple of this (below the cap)


@dataclass(frozen=True)
class ResolutionChoice:
    """The working resolution and, in a plain sentence, why it is that."""

    resolution: int
    reason: str


def choose_resolution(sizes: Sequence[tuple[int, int]], cap: int) -> ResolutionChoice:
    """R for images of the given (width, height) sizes: median short side, multiple of 16, in [32, cap]."""
    if not sizes:
        raise ValueError("a working resolution needs at least one image size")
    if cap < MIN_RESOLUTION:
        raise ValueError(f"the resolution cap must be at least {MIN_RESOLUTION} px, got {cap}")
    median = statistics.median(min(width, height) for width, height in sizes)
    shown = f"median short side {median:g} px"
    rounded = int(median) // STEP * STEP
    if rounded > cap:
        return ResolutionChoice(cap, f"{shown}, capped at {cap} px by the preset")
    if median < MIN_RESOLUTION:
        return ResolutionChoice(MIN_RESOLUTION, f"{shown}, raised to the {MIN_RESOLUTION} px minimum")
    if median == MIN_RESOLUTION:
        return ResolutionChoice(MIN_RESOLUTION, f"{shown} (CIFAR-size images)")
    if rounded == median:
        return ResolutionChoice(rounded, shown)
    return ResolutionChoice(rounded, f"{shown}, rounded down to a multiple of {STEP}")


def resolve_resolution(cfg: ProtectConfig, sizes: Sequence[tuple[int, int]]) -> ProtectConfig:
    """``cfg`` with R settled: chosen from ``sizes`` when auto (0), else the user's, with its reason."""
    if cfg.resolution:  # settled already (the service settles it when the upload is checked) or the user's
        return cfg if cfg.resolution_reason else replace(cfg, resolution_reason="set by the user")
    choice = choose_resolution(sizes, cfg.resolution_cap)
    return replace(cfg, resolution=choice.resolution, resolution_reason=choice.reason)


def victim_resolutions(resolution: int, sizes: Sequence[tuple[int, int]]) -> list[int]:
    """Resolutions victims train at: R, plus 2R when the median short side is at least 2R (never an upscale)."""
    if sizes and statistics.median(min(width, height) for width, height in sizes) >= 2 * resolution:
        return [resolution, 2 * resolution]
    return [resolution]
