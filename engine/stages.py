"""The protection pipeline as pure functions over a job folder, one per stage.

Every stage reads its inputs from files of earlier stages and writes its outputs atomically
(temporary file + rename), and does nothing when its output already exists. A redelivered
task or a second worker therefore never redoes finished work nor sees half-written files.

Job folder layout::

    upload.zip | upload.tar.gz   the user's archive (or any source given to ``ingest``)
    dataset/                     the extracted archive (engine.dataset)
    index.json                   DatasetIndex: classes, entries, skipped files
    working.npz                  images at the working resolution (uint8) + labels
    checkpoints.pt               K surrogate checkpoints + training history
    means.pt                     class-mean features per checkpoint (K, C, D)
    shards/<start>-<stop>.npy    δ of images [start, stop) at the working resolution (float16)
    evaluation.json              measured protection (optional)
    timings/<stage>.json         wall time of every stage / shard
    protected.zip, previews/     the result
"""

import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

import models
from engine.archive import Limits
from engine.attacks import craft, passes_per_image
from engine.config import ProtectConfig
from engine.dataset import DatasetIndex, load_working_set, open_dataset
from engine.device import pick_device
from engine.errors import DatasetError
from engine.features import class_means, target_classes
from engine.methods import method
from engine.package import write_protected_zip
from engine.previews import write_previews
from engine.progress import Progress, no_progress
from engine.surrogate import train_surrogate

INDEX = "index.json"
WORKING = "working.npz"
CHECKPOINTS = "checkpoints.pt"
MEANS = "means.pt"
EVALUATION = "evaluation.json"
RESULT = "protected.zip"


def software_version() -> str:
    try:
        return version("sepguard")
    except PackageNotFoundError:
        return "unknown"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path in the same folder, renamed to ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def timed(job_dir: Path, name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    with atomic_path(job_dir / "timings" / f"{name}.json") as tmp:
        tmp.write_text(json.dumps({"stage": name, "seconds": round(time.perf_counter() - start, 3)}))


def find_upload(job_dir: Path) -> Path:
    uploads = sorted(job_dir.glob("upload.*"))
    if not uploads:
        raise DatasetError("the job has no uploaded dataset")
    return uploads[0]


def load_index(job_dir: Path) -> DatasetIndex:
    """The job's DatasetIndex, its root resolved inside ``job_dir`` (stored relative, so a job
    folder on shared storage works wherever it is mounted)."""
    index = DatasetIndex.load(job_dir / INDEX)
    if not index.root.is_absolute():
        index.root = job_dir / index.root
    return index


def save_index(job_dir: Path, index: DatasetIndex) -> None:
    root = index.root
    if root.is_absolute() and root.resolve().is_relative_to(job_dir.resolve()):
        index.root = root.resolve().relative_to(job_dir.resolve())
    index.save(job_dir / INDEX)  # atomic
    index.root = root


def load_working(job_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(job_dir / WORKING) as data:
        return torch.from_numpy(data["images"]), torch.from_numpy(data["labels"])


def load_nets(job_dir: Path) -> list[torch.nn.Module]:
    """All K checkpoints rebuilt from ``checkpoints.pt`` — once per stage, kept resident."""
    saved = torch.load(job_dir / CHECKPOINTS, map_location="cpu", weights_only=True)
    return [models.load_checkpoint(c) for c in saved["checkpoints"]]


def ingest(
    job_dir: Path,
    cfg: ProtectConfig,
    source: Path | None = None,
    limits: Limits | None = None,
    skip_invalid: bool = False,
    progress: Progress = no_progress,
) -> DatasetIndex:
    """Extract and validate the dataset (unless the API did already) and build the working set."""
    job_dir.mkdir(parents=True, exist_ok=True)
    with timed(job_dir, "ingest"):
        if (job_dir / INDEX).exists():
            index = load_index(job_dir)
        else:
            index = open_dataset(source or find_upload(job_dir), job_dir, limits or Limits(), skip_invalid, progress)
            save_index(job_dir, index)
        if not (job_dir / WORKING).exists():
            images, labels = load_working_set(index, cfg.resolution, progress)
            with atomic_path(job_dir / WORKING) as tmp, open(tmp, "wb") as f:
                np.savez(f, images=images, labels=labels)
    return index


def train(
    job_dir: Path, cfg: ProtectConfig, progress: Progress = no_progress, device: torch.device | None = None
) -> None:
    """Train the surrogate and save its K checkpoints (step 1 of SEP)."""
    if (job_dir / CHECKPOINTS).exists() or not method(cfg.method).needs_surrogate:
        return
    device = device or pick_device()
    images, labels = load_working(job_dir)
    with timed(job_dir, "train"):
        run = train_surrogate(images, labels, len(load_index(job_dir).classes), cfg, device, progress)
        with atomic_path(job_dir / CHECKPOINTS) as tmp:
            torch.save({"checkpoints": run.checkpoints, "history": run.history}, tmp)


def means(
    job_dir: Path, cfg: ProtectConfig, progress: Progress = no_progress, device: torch.device | None = None
) -> None:
    """Class-mean penultimate features of every checkpoint (step 2 of SEP)."""
    if (job_dir / MEANS).exists() or not method(cfg.method).needs_means:
        return
    device = device or pick_device()
    images, labels = load_working(job_dir)
    nets = [n.to(device) for n in load_nets(job_dir)]
    with timed(job_dir, "means"):
        result = class_means(nets, images, labels, len(load_index(job_dir).classes), device).cpu()
        with atomic_path(job_dir / MEANS) as tmp:
            torch.save(result, tmp)
        progress("means", 1, 1)


def plan_shards(job_dir: Path, cfg: ProtectConfig) -> list[tuple[int, int]]:
    """Image ranges [start, stop) of the crafting shards.

    Shards are whole multiples of the crafting batch, so sharded crafting sees exactly the
    batches (and random draws) of a single pass.
    """
    n = len(load_index(job_dir).entries)
    size = max(cfg.craft_batch, (cfg.shard_size // cfg.craft_batch) * cfg.craft_batch)
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def shard_path(job_dir: Path, start: int, stop: int) -> Path:
    return job_dir / "shards" / f"{start:08d}-{stop:08d}.npy"


def craft_shard(
    job_dir: Path,
    cfg: ProtectConfig,
    start: int,
    stop: int,
    progress: Progress = no_progress,
    device: torch.device | None = None,
) -> Path:
    """δ for images [start, stop) against the resident checkpoint ensemble (step 3 of SEP)."""
    out = shard_path(job_dir, start, stop)
    if out.exists():
        return out
    device = device or pick_device()
    images, labels = load_working(job_dir)
    num_classes = len(load_index(job_dir).classes)
    nets: list[torch.nn.Module] = []
    mean_feats = None
    if method(cfg.method).needs_surrogate:
        nets = load_nets(job_dir)
        if method(cfg.method).needs_means:
            mean_feats = torch.load(job_dir / MEANS, map_location="cpu", weights_only=True)
    with timed(job_dir, f"craft-{start:08d}"):
        delta = craft(
            nets, mean_feats, images[start:stop], labels[start:stop], num_classes, cfg, device, start, progress
        )
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, delta.numpy())
    return out


def load_delta(job_dir: Path, cfg: ProtectConfig) -> np.ndarray:
    shards = plan_shards(job_dir, cfg)
    missing = [s for s in shards if not shard_path(job_dir, *s).exists()]
    if missing:
        raise RuntimeError(f"{len(missing)} crafting shard(s) are not finished")
    return np.concatenate([np.load(shard_path(job_dir, *s)) for s in shards])


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
    job_dir: Path, cfg: ProtectConfig, progress: Progress = no_progress, device: torch.device | None = None
) -> dict[str, Any]:
    """Measure the protection: victims trained on the protected images (minus a clean held-out
    split) versus on the clean images, both tested on the clean held-out split."""
    from engine.evaluate import EvalSettings, compare_victims

    if (job_dir / EVALUATION).exists():
        saved: dict[str, Any] = json.loads((job_dir / EVALUATION).read_text())
        return saved
    device = device or pick_device()
    images, labels = load_working(job_dir)
    delta = torch.from_numpy(load_delta(job_dir, cfg))
    protected = apply_delta_working(images, delta, cfg.eps)
    test = torch.from_numpy(holdout_split(labels.numpy(), cfg.holdout, cfg.seed))
    settings = EvalSettings(victims=cfg.eval_victims, epochs=cfg.eval_epochs, seeds=(cfg.seed,))
    with timed(job_dir, "evaluate"):
        result = compare_victims(
            clean=(images[~test], labels[~test]),
            protected=(protected[~test], labels[~test]),
            test=(images[test], labels[test]),
            num_classes=len(load_index(job_dir).classes),
            settings=settings,
            device=device,
            progress=progress,
        )
        result["holdout_images"] = int(test.sum())
        with atomic_path(job_dir / EVALUATION) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return result


def apply_delta_working(images: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Protected uint8 images at the working resolution, with the same rounding as the output."""
    bound = float(np.floor(eps))
    step = (delta.float() * 255).round().clamp(-bound, bound)
    return (images.float() + step).clamp(0, 255).to(torch.uint8)


def collect_timings(job_dir: Path) -> dict[str, float]:
    timings: dict[str, float] = {}
    for f in sorted((job_dir / "timings").glob("*.json")):
        entry = json.loads(f.read_text())
        name = "craft" if entry["stage"].startswith("craft-") else entry["stage"]
        timings[name] = round(timings.get(name, 0.0) + entry["seconds"], 3)
    return timings


def build_report(job_dir: Path, cfg: ProtectConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """report.json: parameters, version, seed, timings, surrogate history, checkpoints used, evaluation."""
    index = load_index(job_dir)
    report: dict[str, Any] = {
        "software": {"sepguard": software_version(), "torch": torch.__version__, "python": platform.python_version()},
        "parameters": cfg.to_dict(),
        "seed": cfg.seed,
        "dataset": index.summary(),
        "timings_seconds": collect_timings(job_dir),
    }
    if (job_dir / CHECKPOINTS).exists():
        saved = torch.load(job_dir / CHECKPOINTS, map_location="cpu", weights_only=True)
        report["surrogate"] = {
            "arch": cfg.arch,
            "width": cfg.width,
            "history": saved["history"],
            "checkpoints_used": [{"step": c["step"], "epoch": c["epoch"]} for c in saved["checkpoints"]],
        }
        k = len(saved["checkpoints"])
        report["passes_per_image"] = passes_per_image(cfg, k)
    if (job_dir / EVALUATION).exists():
        report["evaluation"] = json.loads((job_dir / EVALUATION).read_text())
    report.update(extra or {})
    return report


def package(
    job_dir: Path, cfg: ProtectConfig, report: dict[str, Any] | None = None, progress: Progress = no_progress
) -> Path:
    """Write ``protected.zip`` (images at their original paths and sizes, manifest, report) and previews."""
    out = job_dir / RESULT
    if out.exists():
        return out
    index = load_index(job_dir)
    delta = load_delta(job_dir, cfg)
    _, labels = load_working(job_dir)
    targets = target_classes(labels, len(index.classes)).numpy()
    with timed(job_dir, "package"):
        write_previews(index, delta, job_dir / "previews", cfg.eps)
        write_protected_zip(
            index,
            delta,
            out,
            eps=cfg.eps,
            output_format=cfg.output_format,
            jpeg_quality=cfg.jpeg_quality,
            report=build_report(job_dir, cfg, report),
            targets=targets,
            progress=progress,
        )
    return out
