"""The protection pipeline as pure functions over a job folder (engine.job_dir), one per stage.

Every stage reads its inputs from files of earlier stages and writes its outputs atomically
(temporary file + rename), and does nothing when its output already exists. A redelivered
task or a second worker therefore never redoes finished work nor sees half-written files.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

import models
from engine.archive import Limits
from engine.attacks import craft
from engine.config import ProtectConfig
from engine.dataset import DatasetIndex, load_working_set, open_dataset
from engine.device import pick_device
from engine.features import class_means, target_classes
from engine.job_dir import JobDir, atomic_path
from engine.methods import method
from engine.package import write_protected_zip
from engine.previews import write_previews
from engine.progress import Progress, no_progress
from engine.protected_set import load_protected_set
from engine.report import build_report
from engine.resolution import resolve_resolution, victim_resolutions
from engine.surrogate import train_surrogate

Pair = tuple[torch.Tensor, torch.Tensor]  # uint8 images, int64 labels


@contextmanager
def timed(job: JobDir, name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    with atomic_path(job.timing(name)) as tmp:
        tmp.write_text(json.dumps({"stage": name, "seconds": round(time.perf_counter() - start, 3)}))


def load_working(job: JobDir) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(job.working) as data:
        return torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])


def load_nets(job: JobDir) -> list[torch.nn.Module]:
    """All K checkpoints rebuilt from ``checkpoints.pt`` — once per stage, kept resident."""
    saved = torch.load(job.checkpoints, map_location="cpu", weights_only=True)
    return [models.load_checkpoint(c) for c in saved["checkpoints"]]


def ingest(
    job: JobDir,
    cfg: ProtectConfig,
    source: Path | None = None,
    limits: Limits | None = None,
    skip_invalid: bool = False,
    progress: Progress = no_progress,
) -> DatasetIndex:
    """Extract and validate the dataset (unless the API did already) and build the working set at R."""
    job.root.mkdir(parents=True, exist_ok=True)
    with timed(job, "ingest"):
        if job.index.exists():
            index = job.load_index()
        else:
            index = open_dataset(source or job.find_upload(), job.root, limits or Limits(), skip_invalid, progress)
            job.save_index(index)
        if not job.working.exists():
            resolution = resolve_resolution(cfg, index.sizes()).resolution
            images, labels = load_working_set(index, resolution, progress)
            with atomic_path(job.working) as tmp, open(tmp, "wb") as f:
                np.savez(f, images=images, labels=labels)
    return index


def train(
    job: JobDir, cfg: ProtectConfig, progress: Progress = no_progress, device: torch.device | None = None
) -> None:
    """Train the surrogate and save its K checkpoints (step 1 of SEP)."""
    if job.checkpoints.exists() or not method(cfg.method).needs_surrogate:
        return
    device = device or pick_device()
    images, labels = load_working(job)
    with timed(job, "train"):
        run = train_surrogate(images, labels, len(job.load_index().classes), cfg, device, progress)
        with atomic_path(job.checkpoints) as tmp:
            torch.save({"checkpoints": run.checkpoints, "history": run.history}, tmp)


def means(
    job: JobDir, cfg: ProtectConfig, progress: Progress = no_progress, device: torch.device | None = None
) -> None:
    """Class-mean penultimate features of every checkpoint (step 2 of SEP)."""
    if job.means.exists() or not method(cfg.method).needs_means:
        return
    device = device or pick_device()
    images, labels = load_working(job)
    nets = [n.to(device) for n in load_nets(job)]
    with timed(job, "means"):
        result = class_means(nets, images, labels, len(job.load_index().classes), device).cpu()
        with atomic_path(job.means) as tmp:
            torch.save(result, tmp)
        progress("means", 1, 1)


def plan_shards(job: JobDir, cfg: ProtectConfig) -> list[tuple[int, int]]:
    """Image ranges [start, stop) of the crafting shards.

    Shards are whole multiples of the crafting batch, so sharded crafting sees exactly the
    batches (and random draws) of a single pass.
    """
    n = len(job.load_index().entries)
    size = max(cfg.craft_batch, (cfg.shard_size // cfg.craft_batch) * cfg.craft_batch)
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def craft_shard(
    job: JobDir,
    cfg: ProtectConfig,
    start: int,
    stop: int,
    progress: Progress = no_progress,
    device: torch.device | None = None,
) -> Path:
    """δ for images [start, stop) against the resident checkpoint ensemble (step 3 of SEP)."""
    out = job.shard(start, stop)
    if out.exists():
        return out
    device = device or pick_device()
    images, labels = load_working(job)
    num_classes = len(job.load_index().classes)
    nets: list[torch.nn.Module] = []
    mean_feats = None
    if method(cfg.method).needs_surrogate:
        nets = load_nets(job)
        if method(cfg.method).needs_means:
            mean_feats = torch.load(job.means, map_location="cpu", weights_only=True)
    with timed(job, f"craft-{start:08d}"):
        delta = craft(
            nets, mean_feats, images[start:stop], labels[start:stop], num_classes, cfg, device, start, progress
        )
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, delta.numpy())
    return out


def load_delta(job: JobDir, cfg: ProtectConfig) -> np.ndarray:
    shards = plan_shards(job, cfg)
    missing = [s for s in shards if not job.shard(*s).exists()]
    if missing:
        raise RuntimeError(f"{len(missing)} crafting shard(s) are not finished")
    return np.concatenate([np.load(job.shard(*s)) for s in shards])


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified held-out split: ``fraction`` of every class (at least one
    image of each class with two or more), chosen reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        take = max(1, int(round(len(idx) * fraction)))  # noqa: RUF046 (round of a NumPy float)
        mask[rng.choice(idx, size=min(take, len(idx) - 1), replace=False)] = True
    return mask


def evaluate(
    job: JobDir, cfg: ProtectConfig, progress: Progress = no_progress, device: torch.device | None = None
) -> dict[str, Any]:
    """Measure the protection: victims trained on the protected images (minus a clean held-out
    split) versus on the clean images, both tested on the clean held-out split, at every
    resolution of ``engine.resolution.victim_resolutions`` (R, and 2R for large enough images)."""
    from engine.evaluate import EvalSettings, compare_at_resolutions

    if job.evaluation.exists():
        saved: dict[str, Any] = json.loads(job.evaluation.read_text())
        return saved
    device = device or pick_device()
    images, labels = load_working(job)
    delta = load_delta(job, cfg)
    test = torch.from_numpy(holdout_split(labels.numpy(), cfg.holdout, cfg.seed))
    resolution = int(images.shape[-1])
    index = job.load_index()
    settings = EvalSettings(
        victims=cfg.eval_victims,
        epochs=cfg.eval_epochs,
        seeds=(cfg.seed,),
        resolutions=tuple(victim_resolutions(resolution, index.sizes())),
    )

    def splits_at(r: int) -> tuple[Pair, Pair, Pair]:
        clean, protected = working_pair(job, cfg, r, images, delta)
        return (clean[~test], labels[~test]), (protected[~test], labels[~test]), (clean[test], labels[test])

    with timed(job, "evaluate"):
        result = compare_at_resolutions(splits_at, len(index.classes), settings, device, progress)
        result["holdout_images"] = int(test.sum())
        with atomic_path(job.evaluation) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return result


def working_pair(
    job: JobDir, cfg: ProtectConfig, resolution: int, images: torch.Tensor, delta: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean and protected copies of every image at ``resolution``, made from the images as downloaded.

    Shortcut: when every image is R x R and saved losslessly, the crafting copies plus δ are exactly
    the downloaded images. A photo's δ is stretched to its size and averaged back down, which
    smooths it, so victims of photos always train on what the user downloads."""
    index = job.load_index()
    exact = cfg.output_format == "png" and all(size == (resolution, resolution) for size in index.sizes())
    if resolution == images.shape[-1] and exact:
        return images, apply_delta_working(images, torch.from_numpy(delta), cfg.eps)
    clean, _ = load_working_set(index, resolution)
    return torch.from_numpy(clean), torch.from_numpy(load_protected_set(index, delta, cfg, resolution))


def apply_delta_working(images: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Protected uint8 images at the working resolution, with the same rounding as the output."""
    bound = float(np.floor(eps))
    step = (delta.float() * 255).round().clamp(-bound, bound)
    return (images.float() + step).clamp(0, 255).to(torch.uint8)


def package(
    job: JobDir,
    cfg: ProtectConfig,
    report: dict[str, Any] | None = None,
    progress: Progress = no_progress,
    threads: int = 0,
) -> Path:
    """Write ``protected.zip`` (images at their original paths and sizes, manifest, report) and
    previews; ``threads`` protect images at once (0: every core this process may use, up to 4)."""
    out = job.result
    if out.exists():
        return out
    index = job.load_index()
    delta = load_delta(job, cfg)
    _, labels = load_working(job)
    targets = target_classes(labels, len(index.classes)).numpy()
    with timed(job, "package"):
        write_previews(index, delta, job.previews, cfg.eps, upsample=cfg.upsample)
        write_protected_zip(
            index,
            delta,
            out,
            eps=cfg.eps,
            output_format=cfg.output_format,
            jpeg_quality=cfg.jpeg_quality,
            report=build_report(job, cfg, report),
            targets=targets,
            progress=progress,
            threads=threads,
        )
    return out
