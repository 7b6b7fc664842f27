"""Opening class-folder datasets: validation at upload time and the working set."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.dataset import DatasetIndex, Limits, load_working_set, open_dataset, resize_rgb
from engine.errors import DatasetError, LimitExceeded

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TRAIN_ZIP = SAMPLES / "cifar10-train.zip"


def png(width: int = 12, height: int = 8, colour: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def fails(tmp_path: Path, files: dict[str, bytes], *names: str, **kwargs: object) -> DatasetError:
    """open_dataset refuses the zip, names every file in ``names``, and leaves workdir empty."""
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(DatasetError) as info:
        open_dataset(make_zip(tmp_path / "upload.zip", files), work, **kwargs)  # type: ignore[arg-type]
    for name in names:
        assert name in str(info.value)
    assert list(work.iterdir()) == []
    return info.value


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> DatasetIndex:
    return open_dataset(TRAIN_ZIP, tmp_path_factory.mktemp("work"))


def test_samples_open(samples: DatasetIndex) -> None:
    assert len(samples.classes) == 10 and samples.classes == sorted(samples.classes)
    assert len(samples.entries) == 400
    paths = [e.path for e in samples.entries]
    assert paths == sorted(paths)
    for entry in samples.entries:
        assert entry.path.split("/")[0] == entry.class_name == samples.classes[entry.label]
        assert (samples.root / entry.path).is_file()
        assert (entry.format, entry.width, entry.height) == ("PNG", 32, 32)
    summary = samples.summary()
    assert summary["num_images"] == 400 and summary["num_classes"] == 10
    assert {c["name"]: c["count"] for c in summary["classes"]} == {c: 40 for c in samples.classes}
    assert summary["formats"] == {"PNG": 400} and summary["skipped"] == 0


def test_index_json_round_trip(samples: DatasetIndex) -> None:
    assert DatasetIndex.from_json(samples.to_json()) == samples


def test_working_set_matches_the_images(samples: DatasetIndex) -> None:
    images, labels = load_working_set(samples, 32)
    assert images.shape == (400, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [e.label for e in samples.entries]
    for i in (0, 399):
        pixels = np.asarray(Image.open(samples.root / samples.entries[i].path).convert("RGB"))
        assert np.array_equal(images[i], pixels.transpose(2, 0, 1))


def test_working_set_resizes_any_size(tmp_path: Path) -> None:
    files = {"a/wide.png": png(40, 10, (255, 0, 0)), "b/tiny.png": png(3, 5, (0, 0, 255)), "b/big.jpg": b""}
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (0, 255, 0)).save(buffer, format="JPEG", quality=95)
    files["b/big.jpg"] = buffer.getvalue()
    index = open_dataset(make_zip(tmp_path / "d.zip", files), tmp_path / "work")
    seen: list[tuple[str, str]] = []
    images, labels = load_working_set(
        index, 16, progress=lambda stage, done, total: seen.append((stage, f"{done}/{total}"))
    )
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [0, 1, 1]
    expected = {"a/wide.png": [255, 0, 0], "b/big.jpg": [0, 255, 0], "b/tiny.png": [0, 0, 255]}
    for i, entry in enumerate(index.entries):
        assert np.abs(images[i].mean(axis=(1, 2)) - expected[entry.path]).max() < 3
    assert seen[-1] == ("load", "3/3")


def test_tar_gz_and_wrapper_folder(tmp_path: Path) -> None:
    import tarfile

    source = tmp_path / "d.tar.gz"
    with tarfile.open(source, "w:gz") as tf:
        for name in ("mydata/cat/1.png", "mydata/dog/sub/2.png"):
            data = png()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    index = open_dataset(source, tmp_path / "work")
    assert index.classes == ["cat", "dog"]
    assert [e.path for e in index.entries] == ["cat/1.png", "dog/sub/2.png"]


def test_macos_junk_is_ignored(tmp_path: Path) -> None:
    files = {"cat/1.png": png(), "dog/2.png": png(), "__MACOSX/cat/._1.png": b"junk", "cat/.DS_Store": b"junk"}
    index = open_dataset(make_zip(tmp_path / "d.zip", files), tmp_path / "work")
    assert [e.path for e in index.entries] == ["cat/1.png", "dog/2.png"] and index.skipped == []


def test_leftover_extraction_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / "work" / "dataset" / "old"
    stale.mkdir(parents=True)
    (stale / "x.png").write_bytes(png())
    index = open_dataset(make_zip(tmp_path / "d.zip", {"cat/1.png": png(), "dog/2.png": png()}), tmp_path / "work")
    assert index.classes == ["cat", "dog"] and not stale.exists()


def test_folder_source(tmp_path: Path) -> None:
    for name in ("cat/1.png", "dog/2.png"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(png())
    index = open_dataset(tmp_path / "src", tmp_path / "work")
    assert index.root == tmp_path / "src" and len(index.entries) == 2


def test_all_bad_files_listed_in_one_error(tmp_path: Path) -> None:
    files = {"cat/1.png": png(), "cat/notes.txt": b"hello", "dog/2.png": png(), "dog/broken.png": png()[:40]}
    error = fails(tmp_path, files, "cat/notes.txt", "dog/broken.png")
    assert sorted(error.files) == ["cat/notes.txt", "dog/broken.png"]


def test_many_bad_files_are_counted(tmp_path: Path) -> None:
    files = {"cat/1.png": png(), "dog/2.png": png(), **{f"dog/{i:02}.txt": b"x" for i in range(25)}}
    error = fails(tmp_path, files, "dog/00.txt", "and 5 more")
    assert len(error.files) == 25


def test_corrupt_png_refused(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 100
    data[start : start + 10] = bytes(10)  # flipped bits: decodes, but the chunk checksum is wrong
    files = {"cat/1.png": png(), "dog/flipped.png": bytes(data), "dog/truncated.png": buffer.getvalue()[:300]}
    fails(tmp_path, files, "dog/flipped.png", "dog/truncated.png")


def test_one_class_refused(tmp_path: Path) -> None:
    error = fails(tmp_path, {"cat/1.png": png(), "cat/2.png": png()}, "found 1", "cat")
    assert "at least 2" in str(error)


def test_files_at_top_level_refused(tmp_path: Path) -> None:
    fails(tmp_path, {"cat/1.png": png(), "dog/2.png": png(), "stray.png": png()}, "stray.png", "class folder")


def test_only_loose_files_refused(tmp_path: Path) -> None:
    fails(tmp_path, {"1.png": png(), "2.png": png()}, "1.png", "2.png")


def test_unsafe_archive_refused(tmp_path: Path) -> None:
    fails(tmp_path, {"cat/1.png": png(), "dog/2.png": png(), "../../evil.png": png()}, "evil.png")


def test_pixel_limit(tmp_path: Path) -> None:
    files = {"cat/1.png": png(), "dog/big.png": png(200, 200)}
    error = fails(tmp_path, files, "dog/big.png", limits=Limits(max_pixels=10_000))
    assert isinstance(error, LimitExceeded)


def test_skip_invalid_lists_skipped_files(tmp_path: Path) -> None:
    files = {
        "cat/1.png": png(),
        "cat/notes.txt": b"hello",
        "dog/2.png": png(),
        "stray.png": png(),
        "bird/only-bad.png": b"nope",
    }
    index = open_dataset(make_zip(tmp_path / "d.zip", files), tmp_path / "work", skip_invalid=True)
    assert index.classes == ["cat", "dog"]
    assert [e.path for e in index.entries] == ["cat/1.png", "dog/2.png"]
    assert [e.label for e in index.entries] == [0, 1]
    skipped = {s["path"] for s in index.skipped}
    assert skipped == {"cat/notes.txt", "stray.png", "bird/only-bad.png", "bird/"}


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    files = {"cat/1.png": png(), "dog/2.png": png()}
    open_dataset(make_zip(tmp_path / "d.zip", files), tmp_path / "work", progress=lambda *a: seen.append(a))
    assert seen[0] == ("validate", 0, 2) and seen[-1] == ("validate", 2, 2)


def test_no_torch_import() -> None:
    """The web API imports these modules synchronously and must stay torch-free."""
    import subprocess

    code = (
        "import sys, engine.dataset, engine.package, engine.previews, engine.metrics; sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2]).returncode == 0


def test_a_protected_zip_reads_back_as_a_dataset(tmp_path: Path) -> None:
    """manifest.json and report.json at the top level of sepguard's output are not strays."""
    import zipfile

    src = tmp_path / "out.zip"
    with zipfile.ZipFile(src, "w") as z:
        for cls in ("cat", "dog"):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, "PNG")
            z.writestr(f"{cls}/a.png", buf.getvalue())
        z.writestr("manifest.json", "[]")
        z.writestr("report.json", "{}")
    index = open_dataset(src, tmp_path / "work")
    assert [e.path for e in index.entries] == ["cat/a.png", "dog/a.png"]


@pytest.mark.parametrize("shape", [(80, 40), (40, 80), (33, 517), (20, 10)])
def test_crop_view_keeps_the_centre_square_and_squash_the_whole_frame(shape: tuple[int, int]) -> None:
    """A photo with red ends and a blue middle along its long side: squashing keeps the red, the
    crop view (short side to r, centre square) drops it; both give r x r."""
    h, w = shape
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[..., 2] = 255
    if h > w:
        rgb[: h // 8, :, 0], rgb[-(h // 8) :, :, 0] = 255, 255
    else:
        rgb[:, : w // 8, 0], rgb[:, -(w // 8) :, 0] = 255, 255
    for r in (16, 32):
        squashed, cropped = resize_rgb(rgb, r, "squash"), resize_rgb(rgb, r, "crop")
        assert squashed.shape == cropped.shape == (r, r, 3)
        assert squashed[..., 0].max() > 200 and cropped[..., 0].max() == 0
    with pytest.raises(ValueError, match="squash, crop"):
        resize_rgb(rgb, 16, "pad")
