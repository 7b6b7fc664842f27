"""Wall time of one whole ``sepguard protect`` run, per stage (the 10-minute goal of ``balanced``).

    python -m bench.protect_time                                   # cifar10-mini, balanced
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 SEPGUARD_AUTOCAST=off \\
        python -m bench.protect_time --name protect-time-avx2     # this CPU limited to AVX2 kernels

Run it on a quiet machine: times from runs that overlap other work are not comparable. The
environment variables that shape torch's kernels are recorded with the result, so a run with
kernels limited to AVX2 (and fp32, as sepguard chooses on a CPU without native bf16) says so.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import SHARED_DATA, recorded_args, write_result
from engine.config import preset
from engine.device import pick_device
from engine.device import settings as speed_settings
from engine.protect import protect

KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "SEPGUARD_AUTOCAST", "OMP_NUM_THREADS")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "cifar10-mini" / "train.zip")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--name", default="protect-time")
    args = ap.parse_args()
    cfg = preset(args.preset)
    device = pick_device()
    with tempfile.TemporaryDirectory(prefix="sepguard-bench-") as tmp:
        t0 = time.perf_counter()
        report = protect(args.data, Path(tmp) / "protected.zip", cfg, device=device)
        total = time.perf_counter() - t0
    env = {k: os.environ[k] for k in KERNEL_VARIABLES if k in os.environ}
    stages = report["timings_seconds"]
    lines = [
        f"`sepguard protect` of {args.data.name} ({report['dataset']['num_images']} images), preset `{args.preset}` "
        f"({cfg.method}, {report.get('passes_per_image')} passes per image), device {device}.",
        f"Kernel environment: {env or 'none set'}; speed settings: {speed_settings(device)}.",
        "",
        "| stage | seconds |",
        "|---|---|",
        *(f"| {k} | {v:.1f} |" for k, v in stages.items()),
        f"| **total** | **{total:.1f}** |",
    ]
    write_result(
        args.name,
        {"args": recorded_args(args), "environment": env, "stages": stages, "total_seconds": round(total, 1),
         "config": cfg.to_dict()},
        "\n".join(lines),
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
