"""Before/after/perturbation thumbnails, so users can check for visible artefacts first.

The delta image shows the change actually applied (after 8-bit rounding), amplified so
that -eps maps to black, 0 to mid-gray and +eps to white. Tiny images (CIFAR's 32 px)
are enlarged with NEAREST so individual pixels stay visible; large photos are shrunk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.dataset import DatasetIndex, ImageEntry
from engine.images import load_image
from engine.job_dir import atomic_path
from engine.metrics import psnr, ssim
from engine.package import apply_delta

MIN_SIDE = 128  # thumbnails of smaller images are enlarged (NEAREST) to at least this
MAX_SIDE = 384  # thumbnails of larger images are shrunk to at most this


def pick_entries(index: DatasetIndex, count: int) -> list[int]:
    """Indices of the first image of each class, then second images, ... up to ``count``."""
    by_class: dict[int, list[int]] = {}
    for i, entry in enumerate(index.entries):
        by_class.setdefault(entry.label, []).append(i)
    picked: list[int] = []
    depth = 0
    while len(picked) < count and any(depth < len(v) for v in by_class.values()):
        for label in sorted(by_class):
            if depth < len(by_class[label]) and len(picked) < count:
                picked.append(by_class[label][depth])
        depth += 1
    return picked


def _thumbnail_size(width: int, height: int) -> tuple[int, int]:
    longest = max(width, height)
    if longest > MAX_SIDE:
        scale = MAX_SIDE / longest
    elif min(width, height) < MIN_SIDE:
        scale = float(-(-MIN_SIDE // min(width, height)))  # whole-number NEAREST enlargement
    else:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _thumb(pixels: np.ndarray, size: tuple[int, int]) -> Image.Image:
    im = Image.fromarray(np.ascontiguousarray(pixels))
    if im.size == size:
        return im
    method = Image.Resampling.NEAREST if size[0] >= im.size[0] else Image.Resampling.LANCZOS
    return im.resize(size, method)


def _preview_one(
    i: int, entry: ImageEntry, index: DatasetIndex, delta: np.ndarray, out_dir: Path, eps: float, upsample: str
) -> dict[str, Any]:
    original = load_image(index.root / entry.path, name=entry.path)
    protected = apply_delta(original, delta, eps, upsample)
    a = original.rgb[:, :, 0] if original.gray else original.rgb
    b = protected[:, :, 0] if original.gray else protected
    change = b.astype(np.float32) - a.astype(np.float32)
    visible = np.clip(np.rint((0.5 + change * (0.5 / eps)) * 255.0), 0, 255).astype(np.uint8)
    size = _thumbnail_size(original.width, original.height)
    names = {kind: f"{i}_{kind}.png" for kind in ("original", "protected", "delta")}
    for kind, pixels in (("original", a), ("protected", b), ("delta", visible)):
        _thumb(pixels, size).save(out_dir / names[kind], format="PNG")
    return {
        "index": i,
        "path": entry.path,
        "class": entry.class_name,
        "width": original.width,
        "height": original.height,
        **names,
        "psnr": round(psnr(a, b), 3),
        "ssim": round(ssim(a, b), 5),
    }


def write_previews(
    index: DatasetIndex, delta: np.ndarray, out_dir: Path, eps: float, count: int = 6, upsample: str = "bilinear"
) -> list[dict[str, Any]]:
    """Write ``<i>_original.png``, ``<i>_protected.png``, ``<i>_delta.png`` and ``previews.json``.

    ``delta`` is (N,3,R,R) in fractions of full scale, ``eps`` in /255 units.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = [
        _preview_one(n, index.entries[i], index, delta[i], out_dir, eps, upsample)
        for n, i in enumerate(pick_entries(index, count))
    ]
    with atomic_path(out_dir / "previews.json") as tmp:  # the API lists it while packaging runs
        tmp.write_text(json.dumps(items, indent=1), encoding="utf-8")
    return items
