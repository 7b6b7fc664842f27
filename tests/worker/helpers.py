"""Test helpers shared by the worker and integration tests: small real datasets, zip checks."""

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SAMPLE_ZIP = Path(__file__).resolve().parents[2] / "samples" / "cifar10-train.zip"

# Tiny run: a few seconds per stage on a CPU, several crafting shards.
TINY = dict(epochs=2, steps=2, checkpoints=2, inner_steps=2, shard_size=16, craft_batch=16)


def write_sample_zip(dest: Path, n: int = 48, classes: int = 4) -> list[str]:
    """A class-folder zip of ``n`` real CIFAR-10 PNGs from ``classes`` classes; returns the paths."""
    with zipfile.ZipFile(SAMPLE_ZIP) as src:
        names = sorted(x for x in src.namelist() if x.endswith(".png"))
        keep = sorted({x.split("/")[0] for x in names})[:classes]
        per_class = -(-n // classes)
        chosen: list[str] = []
        for cls in keep:
            chosen += [x for x in names if x.startswith(cls + "/")][:per_class]
        chosen = chosen[:n]
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w") as out:
            for name in chosen:
                out.writestr(name, src.read(name))
    return chosen


def job_params(**overrides: Any) -> dict[str, Any]:
    """Job parameters as the API records them: fast preset + tiny overrides."""
    from engine.config import preset

    measure = bool(overrides.pop("measure", False))
    return preset("fast", **{**TINY, **overrides}).to_dict() | {
        "preset": "fast",
        "measure": measure,
        "skip_invalid": False,
    }


def check_protected_zip(original_zip: Path, protected: bytes | Path, eps: float) -> dict[str, Any]:
    """Assert every original image is in the result at its path (as .png), at its size, within
    the ℓ∞ bound, and that manifest.json and report.json exist; returns the report."""
    src = zipfile.ZipFile(original_zip)
    out = zipfile.ZipFile(io.BytesIO(protected) if isinstance(protected, bytes) else protected)
    names = set(out.namelist())
    assert "manifest.json" in names and "report.json" in names
    bound = int(np.floor(eps))
    originals = [n for n in src.namelist() if not n.endswith("/")]
    assert originals
    for name in originals:
        target = name.rsplit(".", 1)[0] + ".png"
        assert target in names, f"{target} missing from the result"
        a = np.asarray(Image.open(io.BytesIO(src.read(name))).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(io.BytesIO(out.read(target))).convert("RGB"), dtype=np.int16)
        assert a.shape == b.shape, f"{target}: size changed"
        assert int(np.abs(b - a).max()) <= bound, f"{target}: perturbation over the bound"
    assert len([n for n in names if n.endswith(".png")]) == len(originals)
    return json.loads(out.read("report.json"))


def at_crafting(job_id: str) -> None:
    """A running job whose stages up to class means are done, with three crafting shards planned."""
    from app.jobs import state

    state.start_job(job_id)
    state.ensure_stage_rows(job_id, ["ingest", "train", "means", "craft", "package"])
    for stage in ("ingest", "train", "means"):
        state.finish_stage(job_id, stage)
    state.create_shards(job_id, [(0, 16), (16, 32), (32, 40)])
