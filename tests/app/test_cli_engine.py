"""`sepguard protect` and `sepguard evaluate` as a user runs them (subprocesses)."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TINY = ["--preset", "fast", "--epochs", "1", "--steps", "1", "--checkpoints", "2", "--inner-steps", "1", "--width", "8"]


def sepguard(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def subset(src: Path, dst: Path, per_class: int, classes: tuple[str, ...] = ("cat", "dog", "ship")) -> Path:
    counts: dict[str, int] = {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            cls = info.filename.split("/")[0]
            if cls in classes and counts.get(cls, 0) < per_class:
                counts[cls] = counts.get(cls, 0) + 1
                zout.writestr(info.filename, zin.read(info))
    return dst


def test_protect_then_evaluate(tmp_path: Path) -> None:
    train = subset(SAMPLES / "cifar10-train.zip", tmp_path / "train.zip", 12)
    test = subset(SAMPLES / "cifar10-test.zip", tmp_path / "test.zip", 5)
    out = tmp_path / "protected.zip"
    run = sepguard("protect", str(train), "-o", str(out), *TINY, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "working resolution 32 px: median short side 32 px (CIFAR-size images)" in run.stderr
    with zipfile.ZipFile(out) as z, zipfile.ZipFile(train) as src:
        names = set(z.namelist())
        assert {"manifest.json", "report.json"} <= names
        for info in src.infolist():
            protected = np.asarray(Image.open(z.open(info.filename)), dtype=int)
            original = np.asarray(Image.open(src.open(info.filename)), dtype=int)
            assert np.abs(protected - original).max() <= 8
    run = sepguard(
        "evaluate",
        "--train",
        str(out),
        "--test",
        str(test),
        "--compare",
        str(train),
        "--victims",
        "convnet-60ep",
        "--epochs",
        "1",
        "--victim-resolution",
        "32,48",
        "--json",
        str(tmp_path / "eval.json"),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["test_images"] == 15 and {"clean_acc", "protected_acc"} <= set(result["victims"][0])
    assert [v["resolution"] for v in result["victims"]] == result["settings"]["resolutions"] == [32, 48]
    assert "victims train at 32, 48 px" in run.stderr and "at 48 px: trained on protected" in run.stdout
    # 15 test images cannot carry a conclusion: the report says so in words, with the interval
    assert any("only 15 clean test images" in w for w in result["warnings"])
    assert "only 15 clean test images" in run.stdout
    lo, hi = result["victims"][0]["interval95"]["protected"]
    assert lo <= result["victims"][0]["protected_acc"] <= hi and hi - lo > 0.3


def test_evaluate_names_an_unknown_victim(tmp_path: Path) -> None:
    run = sepguard("evaluate", "--train", "a.zip", "--test", "b.zip", "--victims", "alexnet", cwd=tmp_path)
    assert run.returncode == 1 and "unknown victim 'alexnet'" in run.stderr
    run = sepguard("evaluate", "--train", "a.zip", "--test", "b.zip", "--victim-resolution", "64,big", cwd=tmp_path)
    assert run.returncode == 1 and "victim resolutions must be whole numbers" in run.stderr


def test_protect_bad_input_is_one_clear_line_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "notes.zip"
    bad.write_text("not a zip")
    out = tmp_path / "out.zip"
    run = sepguard("protect", str(bad), "-o", str(out), *TINY, cwd=tmp_path)
    assert run.returncode == 1
    assert "not a zip" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not out.exists()
    one_class = subset(SAMPLES / "cifar10-train.zip", tmp_path / "one.zip", 5, classes=("cat",))
    run = sepguard("protect", str(one_class), "-o", str(out), *TINY, cwd=tmp_path)
    assert run.returncode == 1 and "class" in run.stderr and not out.exists()
    run = sepguard("protect", str(one_class), "-o", str(out), "--method", "nope", cwd=tmp_path)
    assert run.returncode == 1 and "unknown method" in run.stderr
    run = sepguard("evaluate", "--train", str(one_class), "--test", str(one_class), "--defense", "blur", cwd=tmp_path)
    assert run.returncode == 1 and "unknown defence" in run.stderr
