"""Opening an uploaded class-folder dataset: extraction, validation and the working set.

``open_dataset`` is what the upload endpoint calls synchronously, so the user learns
about every bad file at upload time (all of them at once, by name) instead of an hour
into a run. It must stay torch-free; ``load_working_set`` hands the attack stages a
small fixed-resolution copy of every image, decoded one at a time so memory stays
bounded for thousands of full-size photos.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.archive import Limits, extract_archive, is_junk, remove_tree
from engine.errors import DatasetError, LimitExceeded
from engine.images import load_image, probe_image
from engine.progress import Progress, no_progress

__all__ = ["DatasetIndex", "ImageEntry", "Limits", "load_working_set", "open_dataset"]

_MAX_LISTED = 20  # bad files named in one error message; the rest are counted
_STRAY = "file outside a class folder"
# sepguard's own top-level files in a protected zip: a protected set can be evaluated
# (or protected again) as it was downloaded.
OWN_METADATA = frozenset({"manifest.json", "report.json"})
_EXPECTED_LAYOUT = "expected one folder per class: <class>/<image> (e.g. cat/001.jpg, dog/002.png)"


@dataclass(frozen=True)
class ImageEntry:
    """One valid image: where it is (relative posix path), its class and its properties."""

    path: str
    label: int
    class_name: str
    format: str
    width: int
    height: int
    mode: str


@dataclass
class DatasetIndex:
    """The validated dataset: the extracted root, sorted classes and images, skipped files."""

    root: Path
    classes: list[str]
    entries: list[ImageEntry]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "classes": list(self.classes),
            "entries": [asdict(e) for e in self.entries],
            "skipped": [dict(s) for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetIndex:
        return cls(
            root=Path(d["root"]),
            classes=list(d["classes"]),
            entries=[ImageEntry(**e) for e in d["entries"]],
            skipped=[dict(s) for s in d.get("skipped", [])],
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> DatasetIndex:
        return cls.from_dict(json.loads(text))

    def labels(self) -> np.ndarray:
        return np.array([e.label for e in self.entries], dtype=np.int64)

    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) of every image, in entry order."""
        return [(e.width, e.height) for e in self.entries]

    def summary(self) -> dict[str, Any]:
        """What the service shows about an upload: counts per class, formats, sizes."""
        per_class = Counter(e.class_name for e in self.entries)
        widths = [e.width for e in self.entries]
        heights = [e.height for e in self.entries]
        areas = [e.width * e.height for e in self.entries]
        smallest = self.entries[int(np.argmin(areas))] if areas else None
        largest = self.entries[int(np.argmax(areas))] if areas else None
        return {
            "num_images": len(self.entries),
            "num_classes": len(self.classes),
            "classes": [{"name": c, "count": per_class.get(c, 0)} for c in self.classes],
            "formats": dict(sorted(Counter(e.format for e in self.entries).items())),
            "modes": dict(sorted(Counter(e.mode for e in self.entries).items())),
            "min_size": [smallest.width, smallest.height] if smallest else None,
            "max_size": [largest.width, largest.height] if largest else None,
            "min_width": min(widths, default=0),
            "max_width": max(widths, default=0),
            "min_height": min(heights, default=0),
            "max_height": max(heights, default=0),
            "skipped": len(self.skipped),
        }


def open_dataset(
    source: Path,
    workdir: Path,
    limits: Limits = Limits(),
    skip_invalid: bool = False,
    progress: Progress | None = None,
    decode: bool = True,
) -> DatasetIndex:
    """Extract ``source`` into ``workdir/dataset`` and validate every image in it.

    ``decode=False`` checks image headers only (format, mode, size) in bounded memory; a file
    that is damaged past its header is then found when the worker decodes it.

    Raises DatasetError (or LimitExceeded) naming the bad files; with ``skip_invalid``
    bad files are left out and listed in ``skipped`` instead. On error, whatever was
    extracted is removed again; a ``dataset`` folder left by an interrupted earlier run
    is replaced, so a retried job starts cleanly.
    """
    source = Path(source)
    dest = Path(workdir) / "dataset"
    extracted = not source.is_dir()
    if extracted and dest.exists():
        remove_tree(dest)  # left over from an interrupted run: start again from the archive
    try:
        root = extract_archive(source, dest, limits)
        return _index(root, limits, skip_invalid, progress or no_progress, decode)
    except BaseException:
        if extracted:
            remove_tree(dest)
        raise


def _walk(root: Path) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Top-level class folders, their files (recursively, sorted) and stray top-level files."""
    classes: list[str] = []
    files: dict[str, list[str]] = {}
    stray: list[str] = []
    for child in sorted(root.iterdir(), key=lambda p: p.name):
        if is_junk(child.name):
            continue
        if child.is_dir():
            classes.append(child.name)
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(child):
                dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
                base = Path(dirpath)
                found += [(base / f).relative_to(root).as_posix() for f in filenames if not is_junk(f)]
            files[child.name] = sorted(found)
        elif child.name not in OWN_METADATA:
            stray.append(child.name)
    return classes, files, stray


def _index(root: Path, limits: Limits, skip_invalid: bool, progress: Progress, decode: bool = True) -> DatasetIndex:
    classes, files, stray = _walk(root)
    bad: list[tuple[str, str, bool]] = [(name, _STRAY, False) for name in stray]
    infos: dict[str, list[tuple[str, Any]]] = {c: [] for c in classes}
    total = sum(len(v) for v in files.values())
    done = 0
    progress("validate", 0, total)
    for cls in classes:
        for rel in files[cls]:
            try:
                infos[cls].append((rel, probe_image(root / rel, limits.max_pixels, name=rel, decode=decode)))
            except LimitExceeded as exc:
                bad.append((rel, _reason(exc, rel), True))
            except DatasetError as exc:
                bad.append((rel, _reason(exc, rel), False))
            done += 1
            progress("validate", done, total)
    empty = [c for c in classes if not infos[c]]
    if bad and not skip_invalid:
        _raise_bad(bad)
    if empty and not skip_invalid:
        raise DatasetError(f"class folder(s) without any image: {', '.join(empty)}", [c + "/" for c in empty])
    kept = [c for c in classes if infos[c]]
    if len(kept) < 2:
        found = f"found {len(kept)}" + (f" ({', '.join(kept)})" if kept else "")
        hint = f"; files at the top level: {', '.join(stray[:_MAX_LISTED])}" if stray else ""
        raise DatasetError(f"a dataset needs at least 2 class folders with images, {found}; {_EXPECTED_LAYOUT}{hint}")
    entries = [
        ImageEntry(
            path=rel,
            label=label,
            class_name=cls,
            format=info.format,
            width=info.width,
            height=info.height,
            mode=info.mode,
        )
        for label, cls in enumerate(kept)
        for rel, info in infos[cls]
    ]
    skipped = [{"path": p, "reason": r} for p, r, _ in bad] + [
        {"path": c + "/", "reason": "class folder without any valid image"} for c in empty
    ]
    return DatasetIndex(root=root, classes=kept, entries=entries, skipped=skipped)


def _reason(exc: DatasetError, rel: str) -> str:
    """The error text without the file name that starts it (the listing names the file)."""
    text = str(exc)
    return text[len(rel) :].lstrip(" :") if text.startswith(rel) else text


def _raise_bad(bad: list[tuple[str, str, bool]]) -> None:
    listed = "; ".join(f"{p} ({r})" for p, r, _ in bad[:_MAX_LISTED])
    more = f"; and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    noun = "file cannot" if len(bad) == 1 else "files cannot"
    message = f"{len(bad)} {noun} be used: {listed}{more}"
    if any(reason == _STRAY for _, reason, _ in bad):
        message += f" ({_EXPECTED_LAYOUT})"
    error = LimitExceeded if any(limit for _, _, limit in bad) else DatasetError
    raise error(message, [p for p, _, _ in bad])


def load_working_set(
    index: DatasetIndex, resolution: int, progress: Progress | None = None, view: str = "squash"
) -> tuple[np.ndarray, np.ndarray]:
    """Every image brought to ``resolution`` x ``resolution`` (``resize_rgb``'s ``view``): (N,3,R,R)
    uint8, (N,) int64.

    Images are decoded one at a time (JPEGs at a reduced scale when much larger than R)
    and only the small copy is kept, so memory is N*3*R*R bytes plus one image.
    """
    report = progress or no_progress
    n = len(index.entries)
    images = np.empty((n, 3, resolution, resolution), dtype=np.uint8)
    report("load", 0, n)
    for i, entry in enumerate(index.entries):
        loaded = load_image(index.root / entry.path, draft_size=(resolution, resolution), name=entry.path)
        images[i] = resize_rgb(loaded.rgb, resolution, view).transpose(2, 0, 1)
        report("load", i + 1, n)
    return images, index.labels()


VIEWS = ("squash", "crop")


def resize_rgb(rgb: np.ndarray, resolution: int, view: str = "squash") -> np.ndarray:
    """(H,W,3) uint8 to (R,R,3) uint8; area-averaging when shrinking, bilinear when growing.

    ``squash`` resizes the whole frame to R x R (how sepguard crafts); ``crop`` resizes the short
    side to R and keeps the centre R x R (how many trainers of photographs feed their models), so a
    victim can be measured on a view that does not match the crafting copy's geometry.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    h, w = rgb.shape[:2]
    if (h, w) == (resolution, resolution):
        return rgb
    shrinking = h >= resolution and w >= resolution
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    if view == "squash":
        return np.asarray(Image.fromarray(rgb, "RGB").resize((resolution, resolution), method))
    scale = resolution / min(h, w)
    size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    resized = Image.fromarray(rgb, "RGB").resize(size, method)
    return np.asarray(resized.crop((left, top, left + resolution, top + resolution)))
