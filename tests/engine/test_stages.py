"""The pipeline stages over a job folder: outputs, idempotence, shards, held-out split."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import stages
from engine.config import preset
from engine.job_dir import JobDir
from engine.report import build_report
from tests.engine.helpers import TINY


def test_stages_produce_every_artifact_and_skip_finished_work(tmp_path: Path, small_zip: Path) -> None:
    job = JobDir(tmp_path / "job")
    cfg = preset("fast", **TINY)
    index = stages.ingest(job, cfg, source=small_zip)
    assert len(index.entries) == 48 and index.classes == ["cat", "dog", "ship"]
    assert json.loads(job.index.read_text())["root"] == "dataset"
    stages.train(job, cfg)
    stages.means(job, cfg)
    shards = stages.plan_shards(job, cfg)
    assert shards == [(0, 32), (32, 48)]
    with pytest.raises(RuntimeError, match="not finished"):
        stages.load_delta(job, cfg)
    for lo, hi in shards:
        stages.craft_shard(job, cfg, lo, hi)
    first = job.shard(0, 32)
    mtime = first.stat().st_mtime_ns
    stages.craft_shard(job, cfg, 0, 32)  # redelivered: nothing is redone
    assert first.stat().st_mtime_ns == mtime
    delta = stages.load_delta(job, cfg)
    assert delta.shape == (48, 3, 32, 32) and np.abs(delta.astype(np.float32)).max() <= cfg.eps / 255 + 1e-3
    out = stages.package(job, cfg, {"note": "x"})
    with zipfile.ZipFile(out) as z:
        report = json.loads(z.read("report.json"))
        assert len([n for n in z.namelist() if n.endswith(".png")]) == 48
    assert report["note"] == "x" and report["surrogate"]["checkpoints_used"][-1]["epoch"] == 1
    assert {"ingest", "train", "means", "craft"} <= set(report["timings_seconds"])
    assert job.previews_index.exists()


def test_a_surrogate_of_two_architectures_goes_through_every_stage(tmp_path: Path, small_zip: Path) -> None:
    job = JobDir(tmp_path / "job")
    cfg = preset("fast", **{**TINY, "arch": "resnet18+mobilenet", "checkpoints": 2})
    stages.ingest(job, cfg, source=small_zip)
    stages.train(job, cfg)
    stages.means(job, cfg)  # features of two widths (ResNet18 and MobileNetV2 at the same width)
    for lo, hi in stages.plan_shards(job, cfg):
        stages.craft_shard(job, cfg, lo, hi)
    delta = stages.load_delta(job, cfg)
    assert np.abs(delta.astype(np.float32)).max() <= cfg.eps / 255 + 1e-3 and delta.any()
    report = json.loads(zipfile.ZipFile(stages.package(job, cfg, {})).read("report.json"))
    assert [c["arch"] for c in report["surrogate"]["checkpoints_used"]] == ["resnet18", "mobilenet"]


def photo_zip(out: Path, size: tuple[int, int]) -> Path:
    """Two classes of three flat photographs of ``size`` (width, height)."""
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(6):
            buffer = io.BytesIO()
            Image.new("RGB", size, (40 * i, 90, 200)).save(buffer, "PNG")
            zf.writestr(f"{('cat', 'dog')[i % 2]}/{i}.png", buffer.getvalue())
    return out


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [({}, 32), ({"resolution_cap": 224}, 96), ({"resolution_cap": 224, "resolution": 48}, 48)],
)
def test_ingest_builds_the_working_set_at_the_settled_resolution(
    tmp_path: Path, overrides: dict[str, int], expected: int
) -> None:
    """Auto: from the images (100 x 150 photos: 96 px under a 224 cap, 32 under fast's); an explicit R wins."""
    job = JobDir(tmp_path / "job")
    stages.ingest(job, preset("fast", **overrides), source=photo_zip(tmp_path / "photos.zip", (100, 150)))
    images, _ = stages.load_working(job)
    assert tuple(images.shape) == (6, 3, expected, expected)


def test_holdout_split_is_stratified_and_repeatable() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 1, 5])
    mask = stages.holdout_split(labels, 0.2, seed=3)
    assert [int(mask[labels == c].sum()) for c in range(4)] == [2, 4, 0, 1]
    assert np.array_equal(mask, stages.holdout_split(labels, 0.2, seed=3))
    assert not np.array_equal(mask, stages.holdout_split(labels, 0.2, seed=4))


def test_apply_delta_working_keeps_the_bound() -> None:
    import torch

    images = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8).expand(1, 3, 1, 3).contiguous()
    delta = torch.full(images.shape, 9 / 255, dtype=torch.float16)
    out = stages.apply_delta_working(images, delta, 8.0)
    assert (out.int() - images.int()).abs().max() <= 8
    assert out[0, 0, 0].tolist() == [8, 136, 255]


def test_evaluate_stage_measures_victims_and_goes_into_the_report(tmp_path: Path, small_zip: Path) -> None:
    job = JobDir(tmp_path / "job")
    cfg = preset("fast", **TINY, eval_epochs=1, eval_victims="convnet-60ep")
    stages.ingest(job, cfg, source=small_zip)
    stages.train(job, cfg)
    stages.means(job, cfg)
    for lo, hi in stages.plan_shards(job, cfg):
        stages.craft_shard(job, cfg, lo, hi)
    result = stages.evaluate(job, cfg)
    assert result["holdout_images"] == 9 and result["victims"][0]["victim"] == "convnet-60ep"
    assert [v["resolution"] for v in result["victims"]] == [32]  # CIFAR-size: R alone
    assert 0 <= result["mean_protected_acc"] <= 1 and 0 <= result["mean_clean_acc"] <= 1
    assert build_report(job, cfg)["evaluation"] == result


def test_evaluate_stage_trains_victims_at_r_and_twice_r_on_photos(tmp_path: Path) -> None:
    """80 x 96 photos crafted at 32 px: victims train at 32 and at 64 px, each row says which."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as zf:
        for i in range(12):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(buffer, "PNG")
            zf.writestr(f"{('cat', 'dog')[i % 2]}/{i}.png", buffer.getvalue())
    job = JobDir(tmp_path / "job")
    cfg = preset("fast", **TINY, eval_epochs=1, eval_victims="convnet-60ep")
    stages.ingest(job, cfg, source=tmp_path / "photos.zip")
    stages.train(job, cfg)
    stages.means(job, cfg)
    for lo, hi in stages.plan_shards(job, cfg):
        stages.craft_shard(job, cfg, lo, hi)
    result = stages.evaluate(job, cfg)
    assert [(v["victim"], v["resolution"]) for v in result["victims"]] == [("convnet-60ep", 32), ("convnet-60ep", 64)]
    assert [m["resolution"] for m in result["by_resolution"]] == result["settings"]["resolutions"] == [32, 64]
    assert all(0 <= m["mean_protected_acc"] <= 1 and "mean_clean_acc" in m for m in result["by_resolution"])
