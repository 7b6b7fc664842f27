"""Shared helpers of the benchmarks: machine description and result files."""

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.device import cpu_flags, cpuinfo

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(os.environ.get("SEPGUARD_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_simd() -> str:
    """The widest vector extension of the CPU that matters for torch's kernels: two CPUs sold
    under the same model name can differ (AVX2 only vs AVX-512 with native bf16)."""
    present = cpu_flags()
    if present is None:
        return "unknown"
    for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX-512 + BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in present:
            return name
    return "SSE"


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU model and cores, GPU name if any, torch version."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "simd": cpu_simd(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent, check=False
        ).stdout.strip()
    except OSError:
        pass
    return info


def recorded_args(args: Any) -> dict[str, str]:
    """A benchmark's arguments for its result file, paths relative to the repository root
    (a result must not name the machine's folders)."""
    root = RESULTS.parents[1]
    return {
        k: os.path.relpath(v, root) if isinstance(v, Path) and v.is_absolute() else str(v)
        for k, v in vars(args).items()
    }


def write_result(name: str, data: dict[str, Any], markdown: str) -> Path:
    """bench/results/<name>.json and .md, stamped with the machine and the time."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    m = data["machine"]
    cpu = f"{m['cpu']}, {m['simd']}"
    header = f"Machine: {m.get('gpu') or cpu} ({m['cores']} cores, torch {m['torch']}), {data['date']}\n\n"
    (RESULTS / f"{name}.md").write_text(f"# {name}\n\n{header}{markdown}\n")
    return RESULTS / f"{name}.json"
