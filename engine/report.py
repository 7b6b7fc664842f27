"""report.json: what a protection run did — parameters, versions, seed, dataset, timings, surrogate, evaluation.

Built from the job folder alone, so any worker can write it after the others did the work.
"""

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from engine.attacks import passes_per_image
from engine.config import ProtectConfig
from engine.job_dir import JobDir
from engine.resolution import resolve_resolution


def software_version() -> str:
    """The installed sepguard version ("unknown" when run from a source tree that was not installed)."""
    try:
        return version("sepguard")
    except PackageNotFoundError:
        return "unknown"


def collect_timings(job: JobDir) -> dict[str, float]:
    """Seconds per stage; the crafting shards add up to one ``craft`` entry."""
    timings: dict[str, float] = {}
    for f in sorted(job.timings.glob("*.json")):
        entry = json.loads(f.read_text())
        name = "craft" if entry["stage"].startswith("craft-") else entry["stage"]
        timings[name] = round(timings.get(name, 0.0) + entry["seconds"], 3)
    return timings


def build_report(job: JobDir, cfg: ProtectConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """report.json: parameters, version, seed, working resolution, timings, surrogate, checkpoints, evaluation."""
    index = job.load_index()
    cfg = resolve_resolution(cfg, index.sizes())
    report: dict[str, Any] = {
        "software": {"sepguard": software_version(), "torch": torch.__version__, "python": platform.python_version()},
        "parameters": cfg.to_dict(),
        "seed": cfg.seed,
        "resolution": cfg.resolution,
        "resolution_reason": cfg.resolution_reason,
        "dataset": index.summary(),
        "timings_seconds": collect_timings(job),
    }
    if job.checkpoints.exists():
        saved = torch.load(job.checkpoints, map_location="cpu", weights_only=True)
        report["surrogate"] = {
            "arch": cfg.arch,
            "width": cfg.width,
            "history": saved["history"],
            "checkpoints_used": [
                {"arch": c["arch"], "step": c["step"], "epoch": c["epoch"]} for c in saved["checkpoints"]
            ],
        }
        k = len(saved["checkpoints"])
        report["passes_per_image"] = passes_per_image(cfg, k)
    if job.evaluation.exists():
        report["evaluation"] = json.loads(job.evaluation.read_text())
    report.update(extra or {})
    return report
