"""What packaging writes beside the images: one manifest row per image, and the report's
warnings and output summary computed from the manifest.

Torch-free: deltas and images never reach this module, only their measurements.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from engine.dataset import ImageEntry
from engine.images import LOSSY_FORMATS


def manifest_row(
    entry: ImageEntry,
    output_path: str,
    output_format: str,
    size: tuple[int, int],
    measured: dict[str, Any],
    target_class: str | None,
) -> dict[str, Any]:
    """The manifest entry of one image: where it came from, where it went, its size, the
    distortion measured on the saved pixels, its class and the class it was pushed towards."""
    return {
        "original_path": entry.path,
        "original_format": entry.format,
        "output_path": output_path,
        "output_format": output_format,
        "width": size[0],
        "height": size[1],
        **measured,
        "class": entry.class_name,
        "target_class": target_class,
    }


def complete_report(
    report: dict[str, Any], manifest: list[dict[str, Any]], output_format: str, quality: int, eps: float
) -> dict[str, Any]:
    """``report`` with the output's warnings added to its own and the output summary."""
    full = dict(report)
    full["warnings"] = list(full.get("warnings", [])) + output_warnings(manifest, output_format, quality, eps)
    full["output"] = output_summary(manifest, output_format, quality, eps)
    return full


def output_warnings(manifest: list[dict[str, Any]], output_format: str, quality: int, eps: float) -> list[str]:
    """What the user should know about the output: lossy formats, the bound exceeded after lossy
    saving, formats that could not be kept, renamed files."""
    out: list[str] = []
    lossy = [m for m in manifest if m["output_format"] in LOSSY_FORMATS]
    if lossy:
        out.append(
            f"{len(lossy)} image(s) were saved in a lossy format (JPEG/WebP, quality {quality}): lossy "
            "compression partly removes the perturbation and weakens protection; use PNG output for full strength"
        )
    over = [m for m in manifest if m["linf"] > math.floor(eps + 1e-9)]
    if over:
        out.append(
            f"{len(over)} image(s) differ from the original by more than eps={eps:g}/255 after lossy saving "
            f"(largest: {max(m['linf'] for m in over)}/255)"
        )
    if output_format == "keep":
        converted = [m for m in manifest if m["output_format"] != m["original_format"]]
        if converted:
            out.append(
                f"{len(converted)} image(s) cannot carry the perturbation in their own format "
                f"({', '.join(sorted({m['original_format'] for m in converted}))}) and were saved as PNG"
            )
    renamed = [m for m in manifest if PurePosixPath(m["output_path"]).stem != PurePosixPath(m["original_path"]).stem]
    if renamed:
        names = ", ".join(f"{m['original_path']} -> {m['output_path']}" for m in renamed[:10])
        out.append(f"{len(renamed)} output name(s) would have clashed and were renamed: {names}")
    return out


def output_summary(manifest: list[dict[str, Any]], output_format: str, quality: int, eps: float) -> dict[str, Any]:
    """Counts and the worst and mean distortion over every image."""
    psnrs = [m["psnr"] for m in manifest]
    ssims = [m["ssim"] for m in manifest]
    return {
        "files": len(manifest),
        "output_format": output_format,
        "jpeg_quality": quality if output_format == "keep" else None,
        "eps": eps,
        "max_linf": max((m["linf"] for m in manifest), default=0),
        "mean_abs": round(float(np.mean([m["mean_abs"] for m in manifest])), 4) if manifest else 0.0,
        "mean_psnr": round(float(np.mean(psnrs)), 3) if psnrs else None,
        "min_psnr": min(psnrs, default=None),
        "mean_ssim": round(float(np.mean(ssims)), 5) if ssims else None,
        "min_ssim": min(ssims, default=None),
    }
