"""The protected training set at any resolution r, made from the images the user downloads.

Victims at the working resolution R can train on the crafting copies plus δ; at any other r a
trainer resizes the downloaded images. So each image is protected exactly as ``engine.package``
writes it (δ resized to the image's own size, rounded and clipped to the bound, encoded in its
output format and decoded again when that format is lossy), then squashed to r x r exactly as
the working set is (``engine.dataset.resize_rgb``), or centre-cropped as many trainers do. One
full-size image is in memory at a time.

For an image of R x R pixels this equals the protected working copy at R. For a larger photo
the two differ by more than rounding: δ stretched to the photo with bilinear weights and
averaged back to R is a smoothed δ (about [1/8, 3/4, 1/8] per axis at twice R), so at R the
downloaded copy carries a weaker perturbation than the crafting copy.

Torch-free, like packaging.
"""

import numpy as np

from engine.config import ProtectConfig
from engine.dataset import DatasetIndex, resize_rgb
from engine.images import LOSSY_FORMATS, load_image
from engine.package import apply_delta, encode_protected, output_format_for
from engine.progress import Progress, no_progress


def load_protected_set(
    index: DatasetIndex,
    delta: np.ndarray,
    cfg: ProtectConfig,
    resolution: int,
    progress: Progress | None = None,
    view: str = "squash",
) -> np.ndarray:
    """Every image as downloaded (original + δ as packaged), brought to ``resolution`` as ``view``
    says (``engine.dataset.resize_rgb``): (N,3,r,r) uint8.

    ``delta`` is (N,3,R,R) in fractions of full scale, in the order of ``index.entries``.
    """
    report = progress or no_progress
    n = len(index.entries)
    if len(delta) != n:
        raise ValueError(f"delta has {len(delta)} entries for {n} images")
    images = np.empty((n, 3, resolution, resolution), dtype=np.uint8)
    report("load", 0, n)
    for i, entry in enumerate(index.entries):
        original = load_image(index.root / entry.path, name=entry.path)
        fmt = output_format_for(entry.format, cfg.output_format)
        if fmt in LOSSY_FORMATS:  # the pixels the saved file holds, after lossy encoding
            _, rgb = encode_protected(original, delta[i], cfg.eps, fmt, cfg.jpeg_quality, entry.path, cfg.upsample)
        else:
            rgb = apply_delta(original, delta[i], cfg.eps, cfg.upsample)
        images[i] = resize_rgb(rgb, resolution, view).transpose(2, 0, 1)
        report("load", i + 1, n)
    return images
