"""Manifest rows, and the report's warnings and output summary computed from them."""

from typing import Any

from engine.dataset import ImageEntry
from engine.manifest import complete_report, manifest_row, output_summary, output_warnings

ENTRY = ImageEntry(path="cat/a.jpg", label=0, class_name="cat", format="JPEG", width=40, height=30, mode="RGB")


def row(output_path: str = "cat/a.png", output_format: str = "PNG", linf: int = 3, **over: Any) -> dict[str, Any]:
    measured = {"linf": linf, "mean_abs": 1.5, "psnr": 40.0, "ssim": 0.98, **over}
    return manifest_row(ENTRY, output_path, output_format, (40, 30), measured, "dog")


def test_row_names_source_output_size_measurements_and_classes() -> None:
    r = row()
    assert list(r) == [
        "original_path",
        "original_format",
        "output_path",
        "output_format",
        "width",
        "height",
        "linf",
        "mean_abs",
        "psnr",
        "ssim",
        "class",
        "target_class",
    ]
    assert (r["original_path"], r["original_format"], r["output_path"], r["output_format"]) == (
        "cat/a.jpg",
        "JPEG",
        "cat/a.png",
        "PNG",
    )
    assert (r["width"], r["height"], r["class"], r["target_class"]) == (40, 30, "cat", "dog")
    assert manifest_row(ENTRY, "cat/a.png", "PNG", (40, 30), {}, None)["target_class"] is None


def test_a_clean_png_output_has_no_warnings() -> None:
    assert output_warnings([row(), row()], "png", 95, 8.0) == []


def test_lossy_output_over_the_bound_is_reported() -> None:
    manifest = [row("cat/a.jpg", "JPEG", linf=11), row("cat/a.jpg", "JPEG", linf=8)]
    warnings = output_warnings(manifest, "keep", 90, 8.0)
    assert len(warnings) == 2
    assert warnings[0].startswith("2 image(s) were saved in a lossy format") and "quality 90" in warnings[0]
    assert warnings[1].startswith("1 image(s) differ from the original by more than eps=8/255")
    assert "largest: 11/255" in warnings[1]


def test_formats_that_cannot_be_kept_and_renamed_files_are_reported() -> None:
    converted = row("cat/a.png", "PNG")  # asked to keep JPEG... written as PNG (same stem: not renamed)
    renamed = row("cat/a.jpg.png", "PNG")
    warnings = output_warnings([converted, renamed], "keep", 95, 8.0)
    assert warnings[0] == "2 image(s) cannot carry the perturbation in their own format (JPEG) and were saved as PNG"
    assert warnings[1] == "1 output name(s) would have clashed and were renamed: cat/a.jpg -> cat/a.jpg.png"
    assert output_warnings([converted], "png", 95, 8.0) == []  # PNG was asked for


def test_summary_of_the_output() -> None:
    manifest = [row(linf=3, psnr=40.0, ssim=0.98), row(linf=5, psnr=38.0, ssim=0.96, mean_abs=2.5)]
    summary = output_summary(manifest, "keep", 90, 8.0)
    assert summary == {
        "files": 2,
        "output_format": "keep",
        "jpeg_quality": 90,
        "eps": 8.0,
        "max_linf": 5,
        "mean_abs": 2.0,
        "mean_psnr": 39.0,
        "min_psnr": 38.0,
        "mean_ssim": 0.97,
        "min_ssim": 0.96,
    }
    assert output_summary(manifest, "png", 90, 8.0)["jpeg_quality"] is None  # quality only matters when kept
    empty = output_summary([], "png", 95, 8.0)
    assert empty["files"] == 0 and empty["max_linf"] == 0 and empty["mean_psnr"] is None


def test_complete_report_keeps_earlier_warnings_and_adds_the_output() -> None:
    report = {"warnings": ["earlier"], "seed": 3}
    full = complete_report(report, [row("cat/a.jpg", "JPEG")], "keep", 90, 8.0)
    assert full["seed"] == 3 and full["warnings"][0] == "earlier" and "lossy" in full["warnings"][1]
    assert full["output"]["files"] == 1
    assert report == {"warnings": ["earlier"], "seed": 3}  # the caller's report is left as it was
