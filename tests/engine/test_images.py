"""Decoding every supported format and mode to 8-bit RGB, and writing images back."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from engine.errors import DatasetError, LimitExceeded
from engine.images import load_image, probe_image, save_image

RNG = np.random.default_rng(7)


def encode(im: Image.Image, fmt: str, **options: object) -> io.BytesIO:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    buffer.seek(0)
    return buffer


def noise(h: int, w: int, c: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize(
    ("mode", "fmt", "gray", "has_alpha"),
    [
        ("1", "PNG", True, False),
        ("L", "PNG", True, False),
        ("LA", "PNG", True, True),
        ("RGB", "PNG", False, False),
        ("RGBA", "PNG", False, True),
        ("RGB", "JPEG", False, False),
        ("L", "JPEG", True, False),
        ("RGB", "WEBP", False, False),
        ("RGBA", "WEBP", False, True),
        ("RGB", "BMP", False, False),
        ("RGB", "TIFF", False, False),
        ("CMYK", "TIFF", False, False),
        ("CMYK", "JPEG", False, False),
    ],
)
def test_modes_and_formats_load_as_8bit_rgb(mode: str, fmt: str, gray: bool, has_alpha: bool) -> None:
    base = Image.fromarray(noise(9, 13, 4), "RGBA")  # real transparency, kept by every encoder
    im = base.convert(mode)
    loaded = load_image(encode(im, fmt))
    assert loaded.rgb.shape == (9, 13, 3) and loaded.rgb.dtype == np.uint8
    assert loaded.format == fmt and loaded.mode == mode and loaded.gray == gray
    assert (loaded.alpha is not None) == has_alpha
    if gray:
        assert np.array_equal(loaded.rgb[:, :, 0], loaded.rgb[:, :, 2])
    if fmt in ("PNG", "BMP", "TIFF") and mode in ("RGB", "L", "RGBA", "LA"):
        assert np.array_equal(loaded.rgb, np.asarray(im.convert("RGB")))
        if has_alpha:
            assert np.array_equal(loaded.alpha, np.asarray(im)[:, :, -1])


def test_cmyk_converts_to_expected_colours() -> None:
    loaded = load_image(encode(Image.new("CMYK", (4, 3), (0, 255, 255, 0)), "TIFF"))
    assert loaded.rgb[0, 0].tolist() == [255, 0, 0]
    assert loaded.icc_profile is None


def test_palette_with_transparency_gets_alpha() -> None:
    im = Image.fromarray(noise(6, 5, 3), "RGB").quantize(8)
    im.info["transparency"] = 0
    loaded = load_image(encode(im, "PNG", transparency=0))
    index0 = np.asarray(im) == 0
    assert loaded.alpha is not None
    assert np.all(loaded.alpha[index0] == 0) and np.all(loaded.alpha[~index0] == 255)
    assert not loaded.gray


def test_palette_without_transparency_and_colour_is_rgb() -> None:
    im = Image.fromarray(noise(6, 5, 3), "RGB").quantize(8)
    loaded = load_image(encode(im, "PNG"))
    assert loaded.alpha is None and not loaded.gray
    assert np.array_equal(loaded.rgb, np.asarray(im.convert("RGB")))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_gray_is_scaled_not_clipped(fmt: str) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    loaded = load_image(encode(Image.fromarray(values), fmt))
    assert loaded.mode.startswith("I;16") and loaded.gray
    assert loaded.rgb[0, :, 0].tolist() == [0, 1, 128, 255]


def test_16bit_big_endian_tiff_is_scaled() -> None:
    values = np.array([[1000, 40000, 65535]], dtype=np.uint16)
    im = Image.frombytes("I;16B", (3, 1), values.astype(">u2").tobytes())
    loaded = load_image(encode(im, "TIFF"))
    assert loaded.rgb[0, :, 0].tolist() == [4, 156, 255]


def test_32bit_integer_gray_is_scaled() -> None:
    values = np.array([[0, 65535, 30000]], dtype=np.int32)
    im = Image.fromarray(values, "I")
    loaded = load_image(encode(im, "TIFF"))
    assert loaded.gray and loaded.rgb[0, :, 0].tolist() == [0, 255, 117]


def test_exif_orientation_is_applied() -> None:
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    data = encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image(data)
    assert loaded.rgb.shape == (20, 10, 3)
    assert loaded.rgb[:8].mean() > 200 and loaded.rgb[12:].mean() < 50  # white is now on top
    data.seek(0)
    info = probe_image(data)  # type: ignore[arg-type]
    assert (info.width, info.height) == (10, 20)


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    data.seek(0)
    loaded = load_image(data)
    assert loaded.format == "GIF" and loaded.rgb.shape == (6, 8, 3)
    assert loaded.rgb[0, 0].tolist() == [255, 0, 0]


def test_pixel_limit_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    Image.new("L", (2000, 1500)).save(path)
    with pytest.raises(LimitExceeded, match="huge.png"):
        load_image(path, max_pixels=1_000_000)
    with pytest.raises(LimitExceeded, match="huge.png"):
        probe_image(path, max_pixels=1_000_000)
    assert load_image(path, max_pixels=3_000_000).rgb.shape == (1500, 2000, 3)


def test_truncated_image_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(encode(Image.fromarray(noise(40, 40, 3)), "PNG").getvalue()[:300])
    with pytest.raises(DatasetError, match="broken.png"):
        probe_image(path)
    with pytest.raises(DatasetError, match="broken.png"):
        load_image(path)


def test_non_image_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DatasetError, match="notes.txt"):
        load_image(path)


def test_save_png_keeps_icc_and_strips_exif() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    source = encode(Image.fromarray(noise(5, 5, 3)), "JPEG", icc_profile=icc, exif=exif.tobytes())
    loaded = load_image(source)
    assert loaded.icc_profile == icc
    out = io.BytesIO()
    save_image(out, loaded.rgb, loaded.alpha, loaded.gray, "PNG", icc_profile=loaded.icc_profile)
    out.seek(0)
    written = Image.open(out)
    assert written.info.get("icc_profile") == icc
    assert "exif" not in written.info and 0x010F not in written.getexif()


@pytest.mark.parametrize(("gray", "alpha", "mode"), [(True, False, "L"), (True, True, "LA"), (False, True, "RGBA")])
def test_save_png_modes(gray: bool, alpha: bool, mode: str) -> None:
    rgb = noise(4, 6, 3)
    if gray:
        rgb[:] = rgb[:, :, :1]
    a = noise(4, 6, 1)[:, :, 0] if alpha else None
    out = io.BytesIO()
    save_image(out, rgb, a, gray, "PNG")
    out.seek(0)
    written = Image.open(out)
    assert written.mode == mode
    channels = np.asarray(written).reshape(4, 6, -1)
    assert np.array_equal(channels[:, :, 0], rgb[:, :, 0])
    if alpha:
        assert np.array_equal(channels[:, :, -1], a)


def test_save_jpeg_quality_changes_size() -> None:
    rgb = noise(32, 32, 3)
    sizes = []
    for quality in (30, 95):
        out = io.BytesIO()
        save_image(out, rgb, fmt="JPEG", jpeg_quality=quality)
        sizes.append(len(out.getvalue()))
        assert Image.open(out).format == "JPEG"
    assert sizes[0] < sizes[1]


def test_gray_palette_is_gray() -> None:
    im = Image.fromarray(noise(6, 5, 1)[:, :, 0], "L").convert("P")
    loaded = load_image(io.BytesIO(encode(im, "PNG").getvalue()))
    assert loaded.gray and loaded.mode == "P"
    assert np.array_equal(loaded.rgb[:, :, 0], np.asarray(im.convert("L")))
