"""report.json built from a job folder: parameters, dataset, timings, surrogate, evaluation, extras."""

import json
from dataclasses import replace
from pathlib import Path

import torch

from engine.config import preset
from engine.dataset import open_dataset
from engine.job_dir import JobDir
from engine.report import build_report, collect_timings
from tests.engine.helpers import write_small_zip


def write_timing(job: JobDir, name: str, seconds: float) -> None:
    job.timing(name).parent.mkdir(parents=True, exist_ok=True)
    job.timing(name).write_text(json.dumps({"stage": name, "seconds": seconds}))


def indexed_job(tmp_path: Path) -> JobDir:
    job = JobDir(tmp_path / "job")
    job.save_index(open_dataset(write_small_zip(tmp_path / "small.zip", per_class=2), job.root, decode=False))
    return job


def test_timings_add_the_crafting_shards_up(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    assert collect_timings(job) == {}
    write_timing(job, "train", 12.5)
    write_timing(job, "craft-00000000", 1.25)
    write_timing(job, "craft-00000512", 2.5)
    assert collect_timings(job) == {"craft": 3.75, "train": 12.5}


def test_report_of_a_job_before_training(tmp_path: Path) -> None:
    job = indexed_job(tmp_path)
    write_timing(job, "ingest", 0.5)
    cfg = preset("fast", seed=7)
    report = build_report(job, cfg, {"device": "cpu"})
    # the preset leaves R to the data: the report holds the R chosen from the sample images, and why
    settled = replace(cfg, resolution=32, resolution_reason="median short side 32 px (CIFAR-size images)")
    assert report["parameters"] == settled.to_dict() and report["seed"] == 7
    assert report["resolution"] == 32 and report["resolution_reason"] == settled.resolution_reason
    assert report["dataset"]["num_images"] == 6 and report["dataset"]["num_classes"] == 3
    assert report["timings_seconds"] == {"ingest": 0.5}
    assert report["device"] == "cpu"
    assert (
        set(report["software"]) == {"sepguard", "torch", "python"} and report["software"]["torch"] == torch.__version__
    )
    assert "surrogate" not in report and "evaluation" not in report and "passes_per_image" not in report


def test_report_keeps_an_explicit_resolution(tmp_path: Path) -> None:
    report = build_report(indexed_job(tmp_path), preset("fast", resolution=48))
    assert (report["resolution"], report["resolution_reason"]) == (48, "set by the user")
    assert report["parameters"]["resolution"] == 48


def test_report_names_the_checkpoints_used_and_the_evaluation(tmp_path: Path) -> None:
    job = indexed_job(tmp_path)
    checkpoints = [
        {"arch": "resnet18", "step": 4, "epoch": 1},
        {"arch": "resnet18", "step": 8, "epoch": 2},
        {"arch": "mobilenet", "step": 12, "epoch": 3},
    ]
    history = [{"epoch": 1, "loss": 2.0}]
    torch.save({"checkpoints": checkpoints, "history": history}, job.checkpoints)
    job.evaluation.write_text(json.dumps({"mean_protected_acc": 0.2}))
    cfg = preset("fast", steps=5, inner_steps=4)
    report = build_report(job, cfg)
    assert report["surrogate"] == {
        "arch": cfg.arch,
        "width": cfg.width,
        "history": history,
        "checkpoints_used": checkpoints,
    }
    assert report["passes_per_image"] == 5 * (3 + 4)  # T·(K+M) with the K checkpoints really saved
    assert report["evaluation"] == {"mean_protected_acc": 0.2}
