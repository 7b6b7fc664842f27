"""One-process protection run (the ``sepguard protect`` command): every stage in order.

The service runs the same stage functions (engine.stages) as separate Celery tasks.
"""

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from engine import stages
from engine.archive import Limits
from engine.config import ProtectConfig
from engine.device import pick_device
from engine.job_dir import JobDir
from engine.progress import Progress, no_progress
from engine.report import build_report
from engine.resolution import resolve_resolution


def protect(
    source: Path,
    out_zip: Path,
    cfg: ProtectConfig,
    workdir: Path | None = None,
    progress: Progress = no_progress,
    limits: Limits | None = None,
    skip_invalid: bool = False,
    measure: bool = False,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Protect the dataset at ``source`` (zip, tar.gz or folder) into ``out_zip``; returns the report.

    ``workdir`` keeps the intermediate files (and lets an interrupted run resume); by default a
    temporary folder is used and removed afterwards.
    """
    device = device or pick_device()
    own_workdir = workdir is None
    job = JobDir(Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="sepguard-")))
    start = time.perf_counter()
    try:
        index = stages.ingest(
            job, cfg, source=Path(source), limits=limits, skip_invalid=skip_invalid, progress=progress
        )
        cfg = resolve_resolution(cfg, index.sizes())  # the R that ingest chose, recorded in the report
        stages.train(job, cfg, progress, device)
        stages.means(job, cfg, progress, device)
        shards = stages.plan_shards(job, cfg)
        n = shards[-1][1]
        for lo, hi in shards:

            def shard_progress(stage: str, done: int, total: int, lo: int = lo) -> None:
                progress("craft", lo + done, n)

            stages.craft_shard(job, cfg, lo, hi, shard_progress, device)
        if measure:
            stages.evaluate(job, cfg, progress, device)
        extra = {"device": str(device), "total_seconds_before_packaging": round(time.perf_counter() - start, 3)}
        stages.package(job, cfg, extra, progress)
        out_zip = Path(out_zip)
        out_zip.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(job.result), out_zip)
        return build_report(job, cfg, extra)
    finally:
        if own_workdir:
            shutil.rmtree(job.root, ignore_errors=True)
