"""How the jobs API shows previews: what the run listed, and a link to every thumbnail."""

import json
from pathlib import Path

from app.api.presenters import preview_list

JOB = "a" * 32
ITEM = {
    "index": 0,
    "path": "cat/0.png",
    "class": "cat",
    "width": 32,
    "height": 32,
    "original": "0_original.png",
    "protected": "0_protected.png",
    "delta": "0_delta.png",
    "psnr": 38.5,
    "ssim": 0.97,
}


def thumbnails(folder: Path) -> Path:
    folder.mkdir()
    for name in ("0_original.png", "0_protected.png", "0_delta.png"):
        (folder / name).write_bytes(b"png")
    return folder / "previews.json"


def test_previews_as_the_run_listed_them_with_links(tmp_path: Path) -> None:
    index = thumbnails(tmp_path / "previews")
    index.write_text(json.dumps([ITEM]))
    shown = preview_list(JOB, index, tmp_path / "previews")
    assert shown.model_dump(mode="json", by_alias=True)["items"] == [ITEM]
    assert shown.urls == {
        name: f"/api/v1/jobs/{JOB}/preview/{name}" for name in ("0_delta.png", "0_original.png", "0_protected.png")
    }


def test_no_previews_before_the_run_wrote_them(tmp_path: Path) -> None:
    shown = preview_list(JOB, tmp_path / "previews" / "previews.json", tmp_path / "previews")
    assert shown.items == [] and shown.urls == {}


def test_an_index_of_another_shape_lists_no_items_but_keeps_the_links(tmp_path: Path) -> None:
    index = thumbnails(tmp_path / "previews")
    for other in ({"items": [ITEM]}, [{"path": "cat/0.png", "before": "0-before.png"}], "[{"):
        index.write_text(other if isinstance(other, str) else json.dumps(other))
        shown = preview_list(JOB, index, tmp_path / "previews")
        assert shown.items == [] and len(shown.urls) == 3
