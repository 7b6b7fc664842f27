"""Packaging: add the crafted perturbation to every original image and zip the result.

The perturbation is crafted at a small working resolution R; here it is resized to each
image's own size and added in 8-bit, with the l-inf bound enforced after rounding, so
|protected - original| <= eps holds for every channel of every pixel of a lossless output.
Images are protected by a few threads at once (Pillow and numpy release the GIL while they
resize, encode and compare), with the pixels in flight bounded so that memory stays a few
full-size buffers however large the photos; the zip receives them in entry order and is written
to a temporary file that is renamed into place at the end: a crash never leaves a half-written
result behind. What goes into manifest.json and report.json is engine.manifest's.

Torch-free: deltas arrive as numpy arrays.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from engine.config import ProtectConfig
from engine.cpus import cpu_count
from engine.dataset import DatasetIndex, ImageEntry
from engine.images import LOSSY_FORMATS, OUTPUT_FORMATS, LoadedImage, load_image, save_image
from engine.job_dir import atomic_path
from engine.manifest import complete_report, manifest_row
from engine.metrics import center_crop, psnr_from_mse, ssim
from engine.progress import Progress, no_progress

_STORED_FORMATS = ("PNG", "JPEG", "WEBP")  # already compressed: deflating them again wastes CPU
# Rows of an image handled at once: the full-size buffers of one image are its pixels and the
# protected copy; the resized perturbation and the 16-bit sums exist one strip at a time.
STRIP_ROWS = 256
# Pixels of the images being protected at once: a few 12-megapixel photos' worth of buffers.
# A larger photo still goes through, alone.
PIXELS_IN_FLIGHT = 12_000_000
MAX_THREADS = 4

T = TypeVar("T")


# How δ (R x R) is stretched to a photo. Both keep the ℓ∞ bound: bilinear weights are
# non-negative and sum to one, nearest copies values. Bilinear gives smooth blobs; nearest keeps
# each of δ's cells as a block, so shrinking the photo back to R by area recovers δ itself.
UPSAMPLING = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def resize_delta(delta: np.ndarray, height: int, width: int, upsample: str = "bilinear") -> np.ndarray:
    """(C,R,R) float delta to (C,H,W) float32, by ``upsample`` (``UPSAMPLING``): the result never
    leaves the range of the input, so the ℓ∞ bound survives the resize."""
    return resize_delta_rows(delta, height, width, 0, height, upsample)


def resize_delta_rows(
    delta: np.ndarray, height: int, width: int, top: int, bottom: int, upsample: str = "bilinear"
) -> np.ndarray:
    """Rows ``top:bottom`` of ``resize_delta(delta, height, width, upsample)``, computed without the others."""
    channels = np.asarray(delta, dtype=np.float32)
    if channels.shape[1:] == (height, width):
        return channels[:, top:bottom].copy()
    scale = channels.shape[1] / height
    box = (0.0, top * scale, float(channels.shape[2]), bottom * scale)
    out = np.empty((channels.shape[0], bottom - top, width), dtype=np.float32)
    for c, plane in enumerate(channels):
        image = Image.fromarray(np.ascontiguousarray(plane), "F")
        out[c] = np.asarray(image.resize((width, bottom - top), UPSAMPLING[upsample], box=box))
    return out


def apply_delta(original: LoadedImage, delta: np.ndarray, eps: float, upsample: str = "bilinear") -> np.ndarray:
    """Protected 8-bit RGB (H,W,3) = original + delta stretched by ``upsample``, with |change| <=
    floor(eps) levels.

    ``delta`` is (3,R,R) in fractions of full scale (1.0 = 255 levels), meant to lie in
    [-eps/255, eps/255]; ``eps`` is in /255 units. Gray sources get the channel mean of
    delta on all three channels, so a black-and-white photo never gains colour.
    """
    if delta.ndim != 3 or delta.shape[0] != 3:
        raise ValueError(f"delta must be (3,R,R), got {delta.shape}")
    bound = math.floor(eps + 1e-9)
    d = np.asarray(delta, dtype=np.float32)
    if original.gray:
        d = d.mean(axis=0, keepdims=True)
    height, width = original.height, original.width
    out = np.empty_like(original.rgb)
    for top in range(0, height, STRIP_ROWS):
        bottom = min(height, top + STRIP_ROWS)
        levels = np.clip(np.rint(resize_delta_rows(d, height, width, top, bottom, upsample) * 255.0), -bound, bound)
        levels = levels.astype(np.int16).transpose(1, 2, 0)  # (rows,W,1 or 3)
        # For gray sources the single delta plane broadcasts over three equal channels.
        out[top:bottom] = np.clip(original.rgb[top:bottom].astype(np.int16) + levels, 0, 255)
    return out


def output_format_for(entry_format: str, output_format: str) -> str:
    """The format an image is written in: PNG, or its own format when that is writable."""
    if output_format == "keep" and entry_format in OUTPUT_FORMATS:
        return entry_format
    return "PNG"


def plan_output_paths(entries: list[ImageEntry], output_format: str) -> list[str]:
    """Output path of every entry, deterministic and collision-free.

    An image keeps its relative path; only the extension changes when the format does
    (``cat/a.jpg`` -> ``cat/a.png``). Entries that keep their exact path are placed
    first; a later clash (``a.jpg`` and ``a.png`` both wanting ``a.png``) gets the full
    original name plus the new extension (``a.jpg.png``), then a counter. Comparison is
    case-insensitive so the zip unpacks cleanly on Windows and macOS too.
    """
    wanted: list[str] = []
    for entry in entries:
        fmt = output_format_for(entry.format, output_format)
        path = PurePosixPath(entry.path)
        if fmt == "PNG" and path.suffix.lower() != ".png":
            wanted.append(str(path.with_name(path.stem + ".png")))
        else:
            wanted.append(entry.path)
    taken: set[str] = set()
    result: list[str | None] = [None] * len(entries)
    order = [i for i, e in enumerate(entries) if wanted[i] == e.path]
    order += [i for i, e in enumerate(entries) if wanted[i] != e.path]
    for i in order:
        candidate = wanted[i]
        if candidate.lower() in taken:
            suffix = PurePosixPath(candidate).suffix
            candidate = entries[i].path + suffix
            stem = candidate[: -len(suffix)]
            k = 1
            while candidate.lower() in taken:
                candidate = f"{stem}-{k}{suffix}"
                k += 1
        taken.add(candidate.lower())
        result[i] = candidate
    return [r for r in result if r is not None]


def encode_protected(
    original: LoadedImage, delta: np.ndarray, eps: float, fmt: str, quality: int, name: str, upsample: str = "bilinear"
) -> tuple[bytes, np.ndarray]:
    """One protected image encoded as ``fmt`` (alpha, gray and ICC profile kept), and the pixels
    that file really holds: lossless output holds exactly the protected pixels, lossy output is
    decoded again so that the manifest measures what was saved."""
    protected = apply_delta(original, delta, eps, upsample)
    buffer = io.BytesIO()
    save_image(buffer, protected, original.alpha, original.gray, fmt, quality, original.icc_profile)
    data = buffer.getvalue()
    saved_rgb = load_image(io.BytesIO(data), name=name).rgb if fmt in LOSSY_FORMATS else protected
    return data, saved_rgb


# SSIM of a photograph is measured on its central region at native resolution: the full-image
# SSIM costs ~1.6 s and ~90 bytes per pixel for a 3-megapixel photo, the crop keeps the
# perturbation's native-scale statistics (downscaling would average it away).
SSIM_REGION = 512


def measure_distortion(original: LoadedImage, saved_rgb: np.ndarray) -> dict[str, Any]:
    """Distortion of the SAVED pixels (after any lossy encoding), in /255 units."""
    a = original.rgb[:, :, 0] if original.gray else original.rgb
    b = saved_rgb[:, :, 0] if original.gray else saved_rgb
    linf, total_abs, total_sq = 0, 0, 0
    for top in range(0, a.shape[0], STRIP_ROWS):  # one strip of differences at a time
        diff = a[top : top + STRIP_ROWS].astype(np.int32) - b[top : top + STRIP_ROWS]
        if diff.size:
            linf = max(linf, int(np.abs(diff).max()))
            total_abs += int(np.abs(diff).sum())
            total_sq += int(np.square(diff).sum(dtype=np.int64))
    count = a.size
    cropped = max(a.shape[:2]) > SSIM_REGION
    measured: dict[str, Any] = {
        "linf": linf,
        "mean_abs": round(total_abs / count, 4) if count else 0.0,
        "psnr": round(psnr_from_mse(total_sq / count if count else 0.0), 3),
        "ssim": round(ssim(center_crop(a, SSIM_REGION), center_crop(b, SSIM_REGION)), 5),
    }
    if cropped:
        measured["ssim_region"] = f"center {SSIM_REGION}x{SSIM_REGION}"
    return measured


def _settings(eps: float | ProtectConfig, output_format: str, jpeg_quality: int) -> tuple[float, str, int, str]:
    if isinstance(eps, ProtectConfig):
        return eps.eps, eps.output_format, eps.jpeg_quality, eps.upsample
    if output_format not in ("png", "keep"):
        raise ValueError(f"output_format must be 'png' or 'keep', got {output_format!r}")
    return float(eps), output_format, jpeg_quality, "bilinear"


def write_protected_zip(
    index: DatasetIndex,
    delta: np.ndarray,
    out_zip: Path,
    eps: float | ProtectConfig,
    output_format: str = "png",
    jpeg_quality: int = 95,
    report: dict[str, Any] | None = None,
    targets: np.ndarray | None = None,
    progress: Progress | None = None,
    threads: int = 0,
) -> list[dict[str, Any]]:
    """Write every protected image, ``manifest.json`` and ``report.json`` into ``out_zip``.

    ``eps`` is in /255 units (or a ProtectConfig, whose eps, output_format, jpeg_quality and
    upsample are then used). ``delta`` is (N,3,R,R) in fractions of full scale,
    in the order of ``index.entries``; ``targets`` (N,) are target label indices; ``threads``
    protect images at once (0: ``package_threads()``), which never changes what is written.
    Returns the manifest (one dict per image).
    """
    eps_value, fmt_choice, quality, upsample = _settings(eps, output_format, jpeg_quality)
    entries = index.entries
    n = len(entries)
    if delta.ndim != 4 or delta.shape[0] != n or delta.shape[1] != 3:
        raise ValueError(f"delta must be ({n},3,R,R) for {n} images, got {delta.shape}")
    if targets is not None and len(targets) != n:
        raise ValueError(f"targets must have {n} entries, got {len(targets)}")
    report_fn = progress or no_progress
    outputs = plan_output_paths(entries, fmt_choice)
    manifest: list[dict[str, Any]] = []

    def protect_one(i: int) -> tuple[bytes, str, tuple[int, int], dict[str, Any]]:
        entry, out_path = entries[i], outputs[i]
        original = load_image(index.root / entry.path, name=entry.path)
        fmt = output_format_for(entry.format, fmt_choice)
        data, saved_rgb = encode_protected(original, delta[i], eps_value, fmt, quality, out_path, upsample)
        return data, fmt, (original.width, original.height), measure_distortion(original, saved_rgb)

    jobs = ((e.width * e.height, partial(protect_one, i)) for i, e in enumerate(entries))
    threads = threads or package_threads()
    with (
        atomic_path(Path(out_zip)) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        ThreadPoolExecutor(threads, thread_name_prefix="package") as pool,
    ):
        report_fn("package", 0, n)
        results = in_order(pool, jobs, PIXELS_IN_FLIGHT, window=2 * threads)
        for i, (entry, out_path, (data, fmt, size, measured)) in enumerate(zip(entries, outputs, results)):
            compress = zipfile.ZIP_STORED if fmt in _STORED_FORMATS else zipfile.ZIP_DEFLATED
            zf.writestr(out_path, data, compress_type=compress)
            target = None if targets is None else index.classes[int(targets[i])]
            manifest.append(manifest_row(entry, out_path, fmt, size, measured, target))
            report_fn("package", i + 1, n)
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
        full_report = complete_report(report or {}, manifest, fmt_choice, quality, eps_value)
        zf.writestr("report.json", json.dumps(full_report, indent=1))
    return manifest


def package_threads() -> int:
    """Threads that protect images at once when the caller does not say (the CLI, the benchmarks):
    the cores this process may use, at most ``MAX_THREADS``. A worker's task passes its own share."""
    return min(MAX_THREADS, cpu_count())


def in_order(
    pool: ThreadPoolExecutor, jobs: Iterable[tuple[int, Callable[[], T]]], budget: int, window: int
) -> Iterator[T]:
    """Results of ``jobs`` ((cost, call) pairs) run on ``pool``, yielded in the order given.

    At most ``window`` jobs are in flight, and their costs sum to at most ``budget`` unless a
    single job costs more (it then runs alone): results are consumed before more is started.
    """
    pending: deque[tuple[int, Future[T]]] = deque()
    in_flight = 0
    for cost, call in jobs:
        while pending and (len(pending) >= window or in_flight + cost > budget):
            done_cost, future = pending.popleft()
            in_flight -= done_cost
            yield future.result()
        pending.append((cost, pool.submit(call)))
        in_flight += cost
    while pending:
        yield pending.popleft()[1].result()
