"""Before/after/δ thumbnails: which images, what sizes, what the δ image shows."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.dataset import DatasetIndex, ImageEntry, open_dataset
from engine.previews import MAX_SIDE, MIN_SIDE, _thumbnail_size, pick_entries, write_previews
from tests.engine.helpers import write_small_zip


def png(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def dataset(tmp_path: Path, files: dict[str, bytes]) -> DatasetIndex:
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return open_dataset(archive, tmp_path / "work")


def test_picks_go_round_the_classes() -> None:
    labels = [0, 0, 0, 1, 2, 2]
    entries = [ImageEntry(f"{i}.png", label, str(label), "PNG", 8, 8, "RGB") for i, label in enumerate(labels)]
    index = DatasetIndex(root=Path("."), classes=["0", "1", "2"], entries=entries)
    assert pick_entries(index, 4) == [0, 3, 4, 1]  # first of each class, then the second ones
    assert pick_entries(index, 100) == [0, 3, 4, 1, 5, 2]  # never more than there are
    assert pick_entries(index, 0) == []


@pytest.mark.parametrize(
    ("size", "thumb"),
    [
        ((32, 32), (128, 128)),  # CIFAR: enlarged 4x so that pixels stay visible
        ((50, 20), (350, 140)),  # a whole-number factor: 7x brings the short side to 128 or more
        ((200, 150), (200, 150)),  # already in range: unchanged
        ((1200, 600), (MAX_SIDE, 192)),  # a photo: the long side shrunk to the maximum
    ],
)
def test_thumbnail_sizes(size: tuple[int, int], thumb: tuple[int, int]) -> None:
    assert _thumbnail_size(*size) == thumb
    if min(size) < MIN_SIDE and max(size) <= MAX_SIDE:
        assert min(thumb) >= MIN_SIDE


def test_previews_of_the_sample_set(tmp_path: Path) -> None:
    index = open_dataset(write_small_zip(tmp_path / "s.zip", per_class=2), tmp_path / "work")
    delta = (np.random.default_rng(5).uniform(-8, 8, (len(index.entries), 3, 32, 32)) / 255).astype(np.float32)
    items = write_previews(index, delta, tmp_path / "previews", 8, count=3)
    assert [it["class"] for it in items] == ["cat", "dog", "ship"]
    assert json.loads((tmp_path / "previews" / "previews.json").read_text()) == items
    for it in items:
        for kind in ("original", "protected", "delta"):
            assert Image.open(tmp_path / "previews" / it[kind]).size == (128, 128)
        d = np.asarray(Image.open(tmp_path / "previews" / it["delta"])).astype(int)
        assert d.std() > 10  # amplified: clearly visible
        assert 0 < it["ssim"] < 1 and 20 < it["psnr"] < 100


def test_the_delta_image_shows_the_change_applied(tmp_path: Path) -> None:
    """-eps is black, 0 mid-gray, +eps white: here +eps on the left half, none on the right."""
    index = dataset(tmp_path, {"a/x.png": png(200, 150, 1), "b/y.png": png(200, 150, 2)})
    delta = np.zeros((2, 3, 32, 32), np.float32)
    delta[:, :, :, :16] = 4 / 255
    items = write_previews(index, delta, tmp_path / "previews", eps=4, count=2)
    shown = np.asarray(Image.open(tmp_path / "previews" / items[0]["delta"])).astype(int)
    original = np.asarray(Image.open(tmp_path / "previews" / items[0]["original"])).astype(int)
    protected = np.asarray(Image.open(tmp_path / "previews" / items[0]["protected"])).astype(int)
    assert shown.shape == (150, 200, 3)
    right = shown[:, 110:]
    assert (right == 128).all()  # unchanged pixels: mid-gray
    raised = protected[:, :90] - original[:, :90]
    assert ((shown[:, :90] == 255) == (raised == 4)).all()  # +eps shows white wherever it was applied
    assert ((raised == 4) | (original[:, :90] > 251)).all()  # applied except where the image was full
