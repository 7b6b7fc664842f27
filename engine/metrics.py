"""Image quality metrics for the manifest: PSNR and SSIM between original and protected.

Both work on uint8 images of any size, down to 1x1, and always return finite floats
so the values can go straight into JSON (identical images: PSNR = ``PSNR_IDENTICAL``).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

PSNR_IDENTICAL = 100.0  # dB reported for identical images (the true value is infinite)
_SSIM_WINDOW = 7  # skimage's default Gaussian-free window


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected (H,W) or (H,W,C) images, got shape {a.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for 8-bit images (PSNR_IDENTICAL when equal)."""
    _check(a, b)
    if mean_squared_error(a, b) == 0:
        return PSNR_IDENTICAL
    return float(min(peak_signal_noise_ratio(a, b, data_range=255), PSNR_IDENTICAL))


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of 8-bit images from their mean squared error (PSNR_IDENTICAL at 0)."""
    if mse == 0:
        return PSNR_IDENTICAL
    return float(min(10 * np.log10(255.0**2 / mse), PSNR_IDENTICAL))


def center_crop(a: np.ndarray, side: int) -> np.ndarray:
    """The central ``side`` x ``side`` region (the whole image when smaller)."""
    h, w = a.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return a[top : top + side, left : left + side]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity for 8-bit images; the window shrinks to fit tiny images."""
    _check(a, b)
    side = min(a.shape[0], a.shape[1])
    win = min(_SSIM_WINDOW, side if side % 2 == 1 else side - 1)
    channel_axis = -1 if a.ndim == 3 else None
    if win < 3:
        # 1-2 px images: a 1-pixel window has no variance, so sample covariance is undefined.
        value = structural_similarity(
            a, b, win_size=1, data_range=255, channel_axis=channel_axis, use_sample_covariance=False
        )
    else:
        value = structural_similarity(a, b, win_size=win, data_range=255, channel_axis=channel_axis)
    return float(value)
