"""End to end: ``engine.protect.protect`` on a 60-image slice of the sample set, fast preset."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from engine.config import preset
from engine.protect import protect

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
N = 60


def subset_zip(out: Path, n: int) -> list[str]:
    """The first ``n`` images of the sample training set, in their class folders."""
    with zipfile.ZipFile(SAMPLES / "cifar10-train.zip") as src, zipfile.ZipFile(out, "w") as dst:
        names = [i.filename for i in src.infolist() if not i.is_dir()][:n]
        for name in names:
            dst.writestr(name, src.read(name))
    return names


def test_protect_writes_a_valid_zip_with_manifest_and_report(tmp_path: Path) -> None:
    source = tmp_path / "in.zip"
    names = subset_zip(source, N)
    # batch 16: four optimiser steps in the one epoch, so two distinct checkpoints exist
    cfg = preset("fast", epochs=1, batch_size=16, checkpoints=2, steps=2, inner_steps=2, craft_batch=32, shard_size=32)
    out = tmp_path / "out" / "protected.zip"
    report = protect(source, out, cfg, workdir=tmp_path / "job")

    with zipfile.ZipFile(out) as zf, zipfile.ZipFile(source) as src:
        assert zf.testzip() is None
        manifest = json.loads(zf.read("manifest.json"))
        saved_report = json.loads(zf.read("report.json"))
        assert len(manifest) == N
        assert sorted(m["original_path"] for m in manifest) == sorted(names)
        for m in manifest[:10]:
            before = np.asarray(Image.open(io.BytesIO(src.read(m["original_path"]))).convert("RGB"), dtype=int)
            after = np.asarray(Image.open(io.BytesIO(zf.read(m["output_path"]))).convert("RGB"), dtype=int)
            assert after.shape == before.shape
            assert np.abs(after - before).max() <= 8  # the ℓ∞ bound, in 8-bit levels
    assert saved_report["parameters"]["method"] == "sep-fa-vr"
    # the preset leaves R to the data: CIFAR-size images are crafted at 32 px, and the report says why
    reason = "median short side 32 px (CIFAR-size images)"
    assert (saved_report["resolution"], saved_report["resolution_reason"]) == (32, reason)
    assert saved_report["parameters"]["resolution"] == 32 and report["resolution_reason"] == reason
    assert saved_report["output"]["files"] == N and saved_report["output"]["max_linf"] <= 8
    assert report["passes_per_image"] == 2 * (2 + 2)
    assert len(report["surrogate"]["checkpoints_used"]) == 2
