"""PSNR and SSIM for the manifest: known values, identical and tiny images, the central crop."""

import math

import numpy as np
import pytest

from engine.metrics import PSNR_IDENTICAL, center_crop, psnr, psnr_from_mse, ssim

RNG = np.random.default_rng(0)


def test_psnr_of_a_known_error() -> None:
    a = RNG.integers(10, 240, (16, 12, 3), dtype=np.uint8)
    one_level = a + 1  # squared error 1 everywhere
    assert psnr(a, one_level) == pytest.approx(20 * math.log10(255))  # 48.13 dB
    four_levels = a - 4  # squared error 16: 12 dB lower
    assert psnr(a, one_level) - psnr(a, four_levels) == pytest.approx(20 * math.log10(4))


def test_psnr_from_mse_matches_psnr_and_is_capped() -> None:
    a = RNG.integers(0, 256, (9, 7), dtype=np.uint8)
    b = np.clip(a.astype(int) + RNG.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    mse = float(np.mean((a.astype(float) - b) ** 2))
    assert psnr_from_mse(mse) == pytest.approx(psnr(a, b))
    assert psnr_from_mse(0) == PSNR_IDENTICAL
    assert psnr_from_mse(1e-12) == PSNR_IDENTICAL  # never above the value reported for identical images


def test_identical_and_tiny_images_give_finite_values() -> None:
    for shape in ((1, 1, 3), (2, 3, 3), (5, 4), (40, 30, 3)):
        a = RNG.integers(0, 256, shape, dtype=np.uint8)
        b = np.clip(a.astype(int) + 4, 0, 255).astype(np.uint8)
        assert psnr(a, a) == PSNR_IDENTICAL and ssim(a, a) == pytest.approx(1.0)
        assert np.isfinite(psnr(a, b)) and psnr(a, b) < PSNR_IDENTICAL
        assert np.isfinite(ssim(a, b)) and ssim(a, b) <= 1.0


def test_ssim_falls_as_the_noise_grows() -> None:
    a = RNG.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    values = []
    for level in (2, 8, 32):
        noise = RNG.integers(-level, level + 1, a.shape)
        values.append(ssim(a, np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)))
    assert 1 > values[0] > values[1] > values[2]


@pytest.mark.parametrize("b_shape", [(8, 8, 3), (8, 9)])
def test_images_of_different_shapes_are_refused(b_shape: tuple[int, ...]) -> None:
    a = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, np.zeros(b_shape, np.uint8))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(a, np.zeros(b_shape, np.uint8))


def test_only_single_images_are_measured() -> None:
    batch = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="expected"):
        psnr(batch, batch)


def test_center_crop() -> None:
    a = np.arange(10 * 7).reshape(10, 7)
    crop = center_crop(a, 4)
    assert crop.shape == (4, 4) and crop[0, 0] == a[3, 1]  # (10-4)//2 = 3 rows, (7-4)//2 = 1 column
    assert np.array_equal(center_crop(a, 20), a)  # an image smaller than the crop is kept whole
    rgb = np.zeros((600, 800, 3), np.uint8)
    assert center_crop(rgb, 512).shape == (512, 512, 3)
