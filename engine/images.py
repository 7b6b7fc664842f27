"""Decoding and encoding of dataset images, whatever their format and colour mode.

Every image is brought to one in-memory form (8-bit RGB + optional alpha + a flag for
grayscale sources) so the rest of the engine never sees palettes, CMYK or 16-bit data,
and is written back in a form that keeps what the user cares about: the pixel size,
the alpha channel, black-and-white staying black-and-white, and the ICC profile.

Torch-free on purpose: the web API validates uploads with this module.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from engine.errors import DatasetError, LimitExceeded

# Formats accepted as input. Cameras' multi-picture JPEGs open as "MPO" through the JPEG
# plugin and are treated as JPEG.
INPUT_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
# Formats the output can be written in; anything else is written as PNG.
OUTPUT_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
LOSSY_FORMATS = ("JPEG", "WEBP")
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
SUPPORTED_MODES = GRAY_MODES + ("P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
_ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass
class LoadedImage:
    """An image decoded to 8-bit RGB; ``gray`` sources have three identical channels."""

    rgb: np.ndarray  # uint8 (H, W, 3)
    alpha: np.ndarray | None  # uint8 (H, W), or None when the source has no transparency
    gray: bool  # the source is black-and-white: keep it single-channel on output
    format: str  # JPEG, PNG, WEBP, BMP, TIFF or GIF
    mode: str  # the source's Pillow mode, e.g. "P", "CMYK", "I;16"
    icc_profile: bytes | None  # kept on output (None for CMYK sources, converted to sRGB)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


@dataclass(frozen=True)
class ImageInfo:
    """What validation learns about a file: format, mode and oriented size."""

    format: str
    mode: str
    width: int
    height: int


def _display_name(source: Path | BinaryIO, name: str | None) -> str:
    if name is not None:
        return name
    return Path(source).name if isinstance(source, (str, Path)) else "image"


def _open(source: Path | BinaryIO, name: str, max_pixels: int | None) -> Image.Image:
    """Open (header only) and refuse too many pixels before anything is decoded."""
    try:
        im = Image.open(source, formats=list(INPUT_FORMATS))
    except Image.DecompressionBombError as exc:
        raise LimitExceeded(f"{name} has too many pixels to process safely ({exc})", [name]) from exc
    except UnidentifiedImageError as exc:
        raise DatasetError(
            f"{name} is not an image in a supported format ({', '.join(INPUT_FORMATS)})", [name]
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{name} cannot be read: {exc}", [name]) from exc
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        im.close()
        raise LimitExceeded(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}", [name]
        )
    if im.mode not in SUPPORTED_MODES:
        im.close()
        raise DatasetError(f"{name} has an unsupported colour mode {im.mode}", [name])
    return im


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # malformed EXIF is ignored, not fatal
        return 1


def probe_image(
    path: Path | BinaryIO, max_pixels: int | None = None, name: str | None = None, decode: bool = True
) -> ImageInfo:
    """Fully decode ``path`` (so corrupt files are caught now) and report its properties.

    Cheaper than :func:`load_image`: no colour conversion, only the decode. With ``decode=False``
    only the header is read (format, mode, size; PNG checksums too), in bounded memory: what the
    web API does, leaving the decode to the worker.
    """
    label = _display_name(path, name)
    im = _open(path, label, max_pixels)
    with im:
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        mode = im.mode
        width, height = im.size
        # Pillow decodes a whole PNG to look for EXIF stored after its pixels: header-only skips that.
        exif_unread = not decode and fmt == "PNG" and "exif" not in im.info
        swap = not exif_unread and _orientation(im) in _ROTATING_ORIENTATIONS
        try:
            if decode:
                im.load()
        except Image.DecompressionBombError as exc:
            raise LimitExceeded(f"{label} has too many pixels to process safely ({exc})", [label]) from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise DatasetError(f"{label} is damaged and cannot be decoded: {exc}", [label]) from exc
    if fmt == "PNG":
        _verify_checksums(path, label)
    if swap:
        width, height = height, width
    return ImageInfo(format=fmt, mode=mode, width=width, height=height)


def _verify_checksums(path: Path | BinaryIO, label: str) -> None:
    """PNG chunks carry CRCs that decoding alone does not check: flipped bits in image data
    can decode to garbage silently. ``verify()`` checks them without decoding again."""
    if not isinstance(path, (str, Path)):
        path.seek(0)
    try:
        with Image.open(path, formats=["PNG"]) as im:
            im.verify()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DatasetError(f"{label} is damaged (checksum error): {exc}", [label]) from exc


def load_image(
    source: Path | BinaryIO,
    max_pixels: int | None = None,
    draft_size: tuple[int, int] | None = None,
    name: str | None = None,
) -> LoadedImage:
    """Decode an image to 8-bit RGB (+ alpha), first frame only, EXIF orientation applied.

    ``draft_size`` lets JPEG decode at a reduced scale (never below that size) when only
    a small view is needed. Raises LimitExceeded / DatasetError naming the file.
    """
    label = _display_name(source, name)
    im = _open(source, label, max_pixels)
    with im:
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        mode = im.mode
        icc = im.info.get("icc_profile") or None
        try:
            if draft_size is not None and fmt == "JPEG" and mode in ("RGB", "L"):
                im.draft(mode, draft_size)
            im.load()
            oriented = _apply_orientation(im)
            rgb, alpha, gray = _to_rgb(oriented)
        except (LimitExceeded, DatasetError):
            raise
        except Image.DecompressionBombError as exc:
            raise LimitExceeded(f"{label} has too many pixels to process safely ({exc})", [label]) from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise DatasetError(f"{label} is damaged and cannot be decoded: {exc}", [label]) from exc
    if mode == "CMYK":
        icc = None  # pixels were converted to sRGB; a CMYK profile would now be wrong
    return LoadedImage(rgb=rgb, alpha=alpha, gray=gray, format=fmt, mode=mode, icc_profile=icc)


def _apply_orientation(im: Image.Image) -> Image.Image:
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF: keep the stored orientation rather than fail
        return im
    return out if out is not None else im


def _scale_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float pixels to 0..255, scaled (not clipped)."""
    if mode.startswith("I;16"):
        wide = arr.astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    values = arr.astype(np.float64)
    if mode == "F" and values.size and values.min() >= 0.0 and values.max() <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    if mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535:
        return np.rint(values * (255.0 / 65535.0)).astype(np.uint8)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """Use the embedded ICC profile when there is one (accurate colours), else Pillow's formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return im.convert("RGB")


def _to_rgb(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bool]:
    mode = im.mode
    alpha: np.ndarray | None = None
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        luma = _scale_to_8bit(np.asarray(im), mode)
        return np.repeat(luma[:, :, None], 3, axis=2), None, True
    if mode in ("1", "L"):
        luma = np.asarray(im.convert("L"))
        return np.repeat(luma[:, :, None], 3, axis=2), None, True
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA"))
        return np.repeat(la[:, :, :1], 3, axis=2), la[:, :, 1].copy(), True
    if mode == "CMYK":
        rgb_im = _cmyk_to_rgb(im)
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info or (im.palette is not None and "A" in im.palette.mode)
        rgb_im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("RGBA", "RGBa"):
        rgb_im = im.convert("RGBA")
    else:
        rgb_im = im if mode == "RGB" else im.convert("RGB")  # no second full-size copy of RGB sources
    arr = np.asarray(rgb_im)
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3].copy()
        arr = arr[:, :, :3]
    rgb = np.ascontiguousarray(arr)
    # A palette image whose colours are all grays is a black-and-white image.
    gray = mode in ("P", "PA") and bool(
        np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2])
    )
    return rgb, alpha, gray


def output_extension(fmt: str) -> str:
    """The usual file extension for an output format."""
    return _EXTENSIONS[fmt.upper()]


def save_image(
    target: Path | BinaryIO,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    gray: bool = False,
    fmt: str = "PNG",
    jpeg_quality: int = 95,
    icc_profile: bytes | None = None,
) -> None:
    """Write 8-bit pixels: PNG (lossless) by default, or JPEG / WebP / BMP / TIFF.

    Gray images are written single-channel (L / LA); only the ICC profile is kept as
    metadata, so EXIF (GPS, camera serial...) never leaks into a protected release.
    JPEG uses 4:4:4 chroma so colour detail of the perturbation is not averaged away.
    """
    fmt = fmt.upper()
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"cannot write format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    pixels = rgb if rgb.ndim == 2 else (rgb[:, :, 0] if gray else rgb)
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {pixels.dtype}")
    im = Image.fromarray(np.ascontiguousarray(pixels), "L" if pixels.ndim == 2 else "RGB")
    if alpha is not None:
        if fmt == "JPEG":
            raise ValueError("JPEG cannot store an alpha channel")
        im.putalpha(Image.fromarray(np.ascontiguousarray(alpha), "L"))
        if fmt == "BMP" and im.mode == "LA":
            im = im.convert("RGBA")
    options: dict[str, object] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if fmt == "PNG":
        # level 3: 2.5x faster than 6 on photographs for files about 16% larger (bench/results/memory*)
        options["compress_level"] = 3
    elif fmt == "JPEG":
        options.update(quality=jpeg_quality, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=jpeg_quality, exact=True, method=4)
    elif fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    im.save(target, format=fmt, **options)
