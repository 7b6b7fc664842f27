"""Adding the perturbation and packaging: the l-inf bound, sizes, alpha, paths, manifest."""

from __future__ import annotations

import io
import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Lock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.config import ProtectConfig
from engine.dataset import DatasetIndex, open_dataset
from engine.images import load_image, save_image
from engine.package import (
    apply_delta,
    in_order,
    plan_output_paths,
    resize_delta,
    resize_delta_rows,
    write_protected_zip,
)

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
R = 32


def random_image(rng: np.random.Generator, mode: str, width: int, height: int) -> tuple[bytes, str]:
    """Encoded test image of the given mode (CMYK as TIFF, which PNG cannot hold)."""
    rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    elif mode == "P":
        im = rgba.convert("RGB").quantize(16)
    else:
        im = rgba.convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    buffer = io.BytesIO()
    im.save(buffer, format=fmt)
    return buffer.getvalue(), fmt


def random_delta(rng: np.random.Generator, n: int, eps: float, scale: float = 1.0) -> np.ndarray:
    return (rng.uniform(-eps, eps, (n, 3, R, R)) * scale / 255.0).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 80),
    height=st.integers(1, 80),
    mode=st.sampled_from(["L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"]),
    eps=st.sampled_from([2.0, 4.0, 8.0, 16.0]),
    scale=st.sampled_from([1.0, 1.5]),  # 1.5: an out-of-range delta must still be clipped
    seed=st.integers(0, 2**32 - 1),
)
def test_bound_holds_after_saving(width: int, height: int, mode: str, eps: float, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data, _ = random_image(rng, mode, width, height)
    original = load_image(io.BytesIO(data))
    protected = apply_delta(original, random_delta(rng, 1, eps, scale)[0], eps)
    out = io.BytesIO()
    save_image(out, protected, original.alpha, original.gray, "PNG", icc_profile=original.icc_profile)
    out.seek(0)
    written = Image.open(out)
    assert written.size == (width, height)
    gray = mode in ("L", "LA", "I;16")
    assert original.gray == gray or mode == "P"
    assert written.mode == ("L" if original.gray else "RGB") + ("A" if original.alpha is not None else "")
    pixels = np.asarray(written).reshape(height, width, -1).astype(np.int16)
    colour = pixels[:, :, :1] if original.gray else pixels[:, :, :3]
    source = original.rgb[:, :, :1] if original.gray else original.rgb
    assert np.abs(colour - source).max() <= eps
    if original.alpha is not None:
        assert np.array_equal(pixels[:, :, -1], original.alpha)


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
@pytest.mark.parametrize("resolution", [32, 96, 224])
@pytest.mark.parametrize("size", [(100, 100), (400, 600), (600, 400), (2000, 300), (300, 1100), (33, 517)])
def test_bound_holds_for_photos_at_every_working_resolution(
    resolution: int, size: tuple[int, int], upsample: str
) -> None:
    """δ crafted at R and stretched to a photo of another size and aspect ratio stays within ε after
    rounding and a lossless save (δ drawn up to 1.5 ε, so clipping is exercised too)."""
    rng = np.random.default_rng(resolution * 7919 + size[0])
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    pixels[: height // 4] = 255  # saturated rows: the sum must be clamped, not wrap around
    original = load_image(io.BytesIO(_encode(Image.fromarray(pixels, "RGB"))))
    eps = 8.0
    delta = (rng.uniform(-1.5 * eps, 1.5 * eps, (3, resolution, resolution)) / 255.0).astype(np.float32)
    protected = apply_delta(original, delta, eps, upsample)
    out = io.BytesIO()
    save_image(out, protected, original.alpha, original.gray, "PNG", icc_profile=original.icc_profile)
    out.seek(0)
    written = np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)
    assert written.shape == (height, width, 3)
    change = np.abs(written - original.rgb.astype(np.int16))
    assert change.max() <= eps and change.max() > 0


@pytest.mark.parametrize("rows", [(0, 640), (0, 256), (256, 512), (384, 640)])
def test_nearest_stretch_keeps_each_cell_as_a_block(rows: tuple[int, int]) -> None:
    """Nearest upsampling gives each of δ's cells its own block, strip by strip as packaging does,
    so a photo shrunk back to R by area averaging holds δ itself; bilinear smooths it."""
    rng = np.random.default_rng(3)
    delta = rng.uniform(-1, 1, (3, R, R)).astype(np.float32)
    height, width = 640, 480  # 20 x 15 pixels per cell
    top, bottom = rows
    whole = resize_delta(delta, height, width, "nearest")
    assert np.array_equal(whole[:, top:bottom], resize_delta_rows(delta, height, width, top, bottom, "nearest"))
    assert np.allclose(whole.reshape(3, R, 20, R, 15).mean(axis=(2, 4)), delta, atol=1e-6)
    smooth = resize_delta(delta, height, width, "bilinear").reshape(3, R, 20, R, 15).mean(axis=(2, 4))
    assert np.abs(smooth - delta).max() > 0.1


def test_apply_delta_adds_exactly_and_clips_to_eps() -> None:
    original = load_image(io.BytesIO(_encode(Image.new("RGB", (10, 7), (100, 100, 100)))))
    delta = np.zeros((3, R, R), np.float32)
    delta[0] = 4 / 255
    delta[1] = -1.0  # far beyond eps: clipped to -eps
    out = apply_delta(original, delta, 8)
    assert out[:, :, 0].tolist() == [[104] * 10] * 7
    assert out[:, :, 1].tolist() == [[92] * 10] * 7
    assert out[:, :, 2].tolist() == [[100] * 10] * 7


def test_gray_source_stays_gray_with_mean_delta() -> None:
    original = load_image(io.BytesIO(_encode(Image.new("L", (5, 5), 50))))
    delta = np.stack([np.full((R, R), v / 255, np.float32) for v in (6, 0, 3)])
    out = apply_delta(original, delta, 8)
    assert np.all(out == 53)  # mean of (6, 0, 3) on every channel


def test_delta_is_resized_to_the_image() -> None:
    original = load_image(io.BytesIO(_encode(Image.new("RGB", (64, 20), (128, 128, 128)))))
    delta = np.zeros((3, R, R), np.float32)
    delta[:, :, : R // 2] = 8 / 255  # left half up, right half unchanged
    out = apply_delta(original, delta, 8).astype(int) - 128
    assert out.shape == (20, 64, 3)
    assert np.all(out[:, :28] == 8) and np.all(out[:, 36:] == 0)


def _encode(im: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> DatasetIndex:
    return open_dataset(SAMPLES / "cifar10-train.zip", tmp_path_factory.mktemp("work"))


def test_protected_zip_of_samples(samples: DatasetIndex, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = len(samples.entries)
    delta = random_delta(rng, n, 8).astype(np.float16)
    targets = (np.array([e.label for e in samples.entries]) + 5) % 10
    out = tmp_path / "out" / "protected.zip"
    calls: list[tuple[str, int, int]] = []
    manifest = write_protected_zip(
        samples, delta, out, 8, report={"seed": 0}, targets=targets, progress=lambda *a: calls.append(a)
    )
    assert calls[-1] == ("package", n, n)
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert names == {e.path for e in samples.entries} | {"manifest.json", "report.json"}
        assert json.loads(zf.read("manifest.json")) == manifest
        report = json.loads(zf.read("report.json"))
        assert report["seed"] == 0 and report["warnings"] == []
        assert report["output"]["files"] == n and report["output"]["max_linf"] <= 8
        for i in rng.choice(n, 20, replace=False):
            entry, item = samples.entries[i], manifest[i]
            original = np.asarray(Image.open(samples.root / entry.path).convert("RGB")).astype(int)
            protected = np.asarray(Image.open(io.BytesIO(zf.read(item["output_path"])))).astype(int)
            diff = np.abs(protected - original)
            assert protected.shape == original.shape and diff.max() <= 8
            assert item["original_path"] == item["output_path"] == entry.path
            assert (item["original_format"], item["width"], item["height"]) == ("PNG", 32, 32)
            assert item["linf"] == diff.max() and item["mean_abs"] == pytest.approx(diff.mean(), abs=1e-3)
            assert 30 < item["psnr"] < 100 and 0 < item["ssim"] < 1
            assert item["class"] == entry.class_name
            assert item["target_class"] == samples.classes[(entry.label + 5) % 10]


def _mixed_dataset(tmp_path: Path) -> DatasetIndex:
    rng = np.random.default_rng(1)
    colour = Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8))
    files = {
        "cat/a.png": _encode(colour),
        "cat/a.jpg": _encode(colour, "JPEG", quality=95),
        "cat/b.gif": _encode(colour.quantize(32), "GIF"),
        "dog/c.webp": _encode(colour, "WEBP", lossless=True),
        "dog/gray.tif": _encode(colour.convert("L"), "TIFF"),
    }
    upload = tmp_path / "mixed.zip"
    with zipfile.ZipFile(upload, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return open_dataset(upload, tmp_path / "work")


def test_png_output_renames_extensions_and_resolves_clashes(tmp_path: Path) -> None:
    index = _mixed_dataset(tmp_path)
    out = tmp_path / "p.zip"
    manifest = write_protected_zip(index, random_delta(np.random.default_rng(2), len(index.entries), 4), out, 4)
    mapping = {m["original_path"]: m["output_path"] for m in manifest}
    assert mapping == {
        "cat/a.jpg": "cat/a.jpg.png",
        "cat/a.png": "cat/a.png",
        "cat/b.gif": "cat/b.png",
        "dog/c.webp": "dog/c.png",
        "dog/gray.tif": "dog/gray.png",
    }
    with zipfile.ZipFile(out) as zf:
        assert Image.open(io.BytesIO(zf.read("dog/gray.png"))).mode == "L"
        warnings = json.loads(zf.read("report.json"))["warnings"]
    assert any("cat/a.jpg -> cat/a.jpg.png" in w for w in warnings)
    assert all(m["linf"] <= 4 for m in manifest)


def test_keep_format_writes_original_formats_and_warns(tmp_path: Path) -> None:
    index = _mixed_dataset(tmp_path)
    cfg = ProtectConfig(eps=8, output_format="keep", jpeg_quality=90)
    out = tmp_path / "k.zip"
    manifest = write_protected_zip(index, random_delta(np.random.default_rng(3), len(index.entries), 8), out, cfg)
    by_path = {m["original_path"]: m for m in manifest}
    assert by_path["cat/a.jpg"]["output_path"] == "cat/a.jpg" and by_path["cat/a.jpg"]["output_format"] == "JPEG"
    assert by_path["dog/gray.tif"]["output_path"] == "dog/gray.tif"
    assert by_path["cat/b.gif"]["output_format"] == "PNG"  # GIF palettes cannot carry the perturbation
    with zipfile.ZipFile(out) as zf:
        assert Image.open(io.BytesIO(zf.read("cat/a.jpg"))).format == "JPEG"
        report = json.loads(zf.read("report.json"))
    assert any("lossy" in w and "weakens protection" in w for w in report["warnings"])
    assert any("GIF" in w for w in report["warnings"])


def test_plan_output_paths_is_case_insensitive(tmp_path: Path) -> None:
    index = _mixed_dataset(tmp_path)
    entries = [e for e in index.entries if e.path in ("cat/a.jpg", "cat/a.png")]
    upper = [type(e)(**{**e.__dict__, "path": e.path.replace("a.png", "A.PNG")}) for e in entries]
    assert plan_output_paths(upper, "png") == ["cat/a.jpg.png", "cat/A.PNG"]


def test_failure_leaves_no_partial_zip(tmp_path: Path) -> None:
    index = _mixed_dataset(tmp_path)
    (index.root / index.entries[-1].path).unlink()  # the last image disappears mid-run
    out = tmp_path / "out" / "p.zip"
    with pytest.raises(Exception):  # noqa: B017 (whichever error the missing file raises)
        write_protected_zip(index, random_delta(np.random.default_rng(4), len(index.entries), 8), out, 8)
    assert list(out.parent.iterdir()) == []


def test_zip_is_the_same_with_one_thread_or_several(tmp_path: Path) -> None:
    index = _mixed_dataset(tmp_path)
    delta = random_delta(np.random.default_rng(5), len(index.entries), 8)
    contents = []
    for threads in (1, 4):
        out = tmp_path / f"t{threads}.zip"
        write_protected_zip(index, delta, out, 8, threads=threads)
        with zipfile.ZipFile(out) as zf:
            contents.append([(info.filename, zf.read(info)) for info in zf.infolist()])
    assert contents[0] == contents[1]  # same files, same bytes, same order


def test_in_order_keeps_order_and_bounds_what_is_in_flight() -> None:
    lock = Lock()
    running: list[int] = []  # costs of the jobs running now
    peaks: list[tuple[int, int]] = []  # (jobs, cost) in flight, seen by each job

    def job(k: int, cost: int) -> int:
        with lock:
            running.append(cost)
            peaks.append((len(running), sum(running)))
        time.sleep(0.01)
        with lock:
            running.remove(cost)
        return k

    costs = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 20, 1, 1]  # 20: more than the budget, so it runs alone
    jobs = [(c, lambda k=k, c=c: job(k, c)) for k, c in enumerate(costs)]
    with ThreadPoolExecutor(4) as pool:
        assert list(in_order(pool, jobs, budget=10, window=3)) == list(range(len(costs)))
    assert max(n for n, _ in peaks) <= 3
    assert all(total <= 10 or n == 1 for n, total in peaks)
    assert max(n for n, _ in peaks) > 1  # it did run jobs side by side


def test_in_order_passes_a_job_error_on() -> None:
    def fail() -> int:
        raise OSError("unreadable image")

    jobs = [(1, lambda: 1), (1, fail), (1, lambda: 3)]
    with ThreadPoolExecutor(2) as pool, pytest.raises(OSError, match="unreadable"):
        list(in_order(pool, jobs, budget=10, window=2))


def test_delta_shape_checked(samples: DatasetIndex, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="delta"):
        write_protected_zip(samples, np.zeros((3, 3, R, R), np.float32), tmp_path / "p.zip", 8)


def test_measure_uses_exact_psnr_and_a_native_resolution_ssim_region_for_photos() -> None:
    from engine.images import LoadedImage
    from engine.metrics import psnr
    from engine.package import SSIM_REGION, measure_distortion

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (600, 700, 3), dtype=np.uint8)
    noisy = np.clip(big.astype(int) + rng.integers(-4, 5, big.shape), 0, 255).astype(np.uint8)
    original = LoadedImage(rgb=big, alpha=None, gray=False, format="PNG", mode="RGB", icc_profile=None)
    m = measure_distortion(original, noisy)
    assert m["psnr"] == round(psnr(big, noisy), 3) and m["linf"] == 4
    assert m["ssim_region"] == f"center {SSIM_REGION}x{SSIM_REGION}" and 0 < m["ssim"] < 1
    small = LoadedImage(rgb=big[:32, :32], alpha=None, gray=False, format="PNG", mode="RGB", icc_profile=None)
    assert "ssim_region" not in measure_distortion(small, noisy[:32, :32])
