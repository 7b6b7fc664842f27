"""The protected set at any resolution, made from the images as the user downloads them."""

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import preset
from engine.dataset import DatasetIndex, load_working_set, open_dataset
from engine.protected_set import load_protected_set
from engine.stages import apply_delta_working

EPS = 8.0


def noise_index(tmp_path: Path, sizes: list[tuple[int, int]]) -> DatasetIndex:
    """Two classes of random-noise RGB PNGs of the given (width, height) sizes."""
    rng = np.random.default_rng(0)
    source = tmp_path / "photos.zip"
    with zipfile.ZipFile(source, "w") as zf:
        for i, (width, height) in enumerate(sizes):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
            zf.writestr(f"{('cat', 'dog')[i % 2]}/{i}.png", buffer.getvalue())
    return open_dataset(source, tmp_path / "job")


def random_delta(n: int, resolution: int = 32) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(-EPS / 255, EPS / 255, (n, 3, resolution, resolution)).astype(np.float16)


def test_at_r_images_of_r_pixels_equal_the_protected_working_split(tmp_path: Path) -> None:
    index = noise_index(tmp_path, [(32, 32)] * 4)
    delta = random_delta(4)
    working, _ = load_working_set(index, 32)
    expected = apply_delta_working(torch.from_numpy(working), torch.from_numpy(delta), EPS).numpy()
    assert np.array_equal(load_protected_set(index, delta, preset("fast", eps=EPS), 32), expected)


@pytest.mark.parametrize("view", ["squash", "crop"])
@pytest.mark.parametrize("resolution", [32, 64])
def test_photos_stay_within_eps_of_the_clean_split_resized_alike(tmp_path: Path, resolution: int, view: str) -> None:
    """Resizing is a convex combination, so |protected - clean| <= eps + 1 (rounding) at any size."""
    index = noise_index(tmp_path, [(80, 120), (120, 80), (96, 96), (50, 70)])
    delta = random_delta(4)
    protected = load_protected_set(index, delta, preset("fast", eps=EPS), resolution, view=view)
    clean, _ = load_working_set(index, resolution, view=view)
    assert protected.shape == (4, 3, resolution, resolution) and protected.dtype == np.uint8
    difference = np.abs(protected.astype(np.int16) - clean)
    assert difference.max() <= EPS + 1 and difference.mean() > 1  # δ is there, within its bound


def test_at_r_photos_carry_a_smoothed_delta(tmp_path: Path) -> None:
    """δ stretched to a photo and averaged back to R is not the crafted δ: the downloaded copy at R
    differs from the crafting copy by more than rounding, but stays within both bounds."""
    index = noise_index(tmp_path, [(64, 64)] * 2)
    delta = random_delta(2)
    working, _ = load_working_set(index, 32)
    crafted = apply_delta_working(torch.from_numpy(working), torch.from_numpy(delta), EPS).numpy()
    downloaded = load_protected_set(index, delta, preset("fast", eps=EPS), 32)
    gap = np.abs(downloaded.astype(np.int16) - crafted)
    assert gap.max() > 1 and gap.max() <= 2 * EPS + 1
    blocks = load_protected_set(index, delta, preset("fast", eps=EPS, upsample="nearest"), 32)
    near = np.abs(blocks.astype(np.int16) - crafted)  # nearest: δ itself, up to rounding and clipping
    assert near.max() <= 2 and near.mean() < gap.mean() / 4


def test_lossy_output_is_measured_as_saved(tmp_path: Path) -> None:
    """With ``keep`` a JPEG source is saved as JPEG: the set holds the decoded JPEG, not the exact sum."""
    rng = np.random.default_rng(2)
    for cls, name in (("cat", "a.jpg"), ("dog", "b.png")):
        (tmp_path / "data" / cls).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "data" / cls / name)
    index = open_dataset(tmp_path / "data", tmp_path / "job")
    assert [e.format for e in index.entries] == ["JPEG", "PNG"]
    delta = random_delta(2)
    kept = load_protected_set(index, delta, preset("fast", eps=EPS, output_format="keep", jpeg_quality=50), 32)
    lossless = load_protected_set(index, delta, preset("fast", eps=EPS), 32)
    assert kept.shape == lossless.shape == (2, 3, 32, 32)
    assert not np.array_equal(kept[0], lossless[0]) and np.array_equal(kept[1], lossless[1])
    with pytest.raises(ValueError, match="2 images"):
        load_protected_set(index, random_delta(3), preset("fast"), 32)
