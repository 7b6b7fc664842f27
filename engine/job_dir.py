"""The job folder: where every file of a job lives, and the one way files are written into it.

Layout::

    upload.zip | upload.tar.gz   the user's archive (or any source given to the ingest stage)
    dataset/                     the extracted archive (engine.dataset)
    index.json                   DatasetIndex: classes, entries, skipped files
    working.npz                  images at the working resolution (uint8) + labels
    checkpoints.pt               K surrogate checkpoints + training history
    means.pt                     class-mean features per checkpoint (K, C, D)
    shards/<start>-<stop>.npy    δ of images [start, stop) at the working resolution (float16)
    evaluation.json              measured protection (optional)
    timings/<stage>.json         wall time of every stage / shard
    protected.zip                the result
    previews/                    before/after/δ thumbnails and previews.json

The service (which creates the folder and saves the upload and its index) and the workers (which
run the stages) may mount the data folder at different paths, so nothing stored in the folder
names it: the index keeps the dataset's root relative to the folder.

Torch-free: the web API imports it.
"""

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.archive import remove_tree
from engine.dataset import DatasetIndex
from engine.errors import DatasetError

UPLOAD_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
# preview names are plain PNG file names: no folders, so a request can never leave previews/
PREVIEW_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.png$")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (``.<name>.<random>.part``), renamed to ``path`` only if
    the block succeeds: a reader never sees half a file, a crash leaves no file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def upload_name(filename: str | None) -> str:
    """The stored upload's name, keeping a recognised archive suffix (``upload.zip`` otherwise)."""
    name = (filename or "").lower()
    for suffix in UPLOAD_SUFFIXES:
        if name.endswith(suffix):
            return "upload" + (".tar.gz" if suffix == ".tgz" else suffix)
    return "upload.zip"


@dataclass(frozen=True)
class JobDir:
    """The files of the job whose folder is ``root``."""

    root: Path

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    @property
    def working(self) -> Path:
        return self.root / "working.npz"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints.pt"

    @property
    def means(self) -> Path:
        return self.root / "means.pt"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def timings(self) -> Path:
        return self.root / "timings"

    @property
    def result(self) -> Path:
        return self.root / "protected.zip"

    @property
    def previews(self) -> Path:
        return self.root / "previews"

    @property
    def previews_index(self) -> Path:
        return self.previews / "previews.json"

    def upload(self, filename: str | None = None) -> Path:
        """Where an upload called ``filename`` is stored."""
        return self.root / upload_name(filename)

    def find_upload(self) -> Path:
        """The stored upload, whatever its archive type."""
        uploads = sorted(self.root.glob("upload.*"))
        if not uploads:
            raise DatasetError("the job has no uploaded dataset")
        return uploads[0]

    def shard(self, start: int, stop: int) -> Path:
        """δ of images [start, stop)."""
        return self.shards / f"{start:08d}-{stop:08d}.npy"

    def timing(self, name: str) -> Path:
        return self.timings / f"{name}.json"

    def preview(self, name: str) -> Path:
        """One preview PNG; ``name`` must be a plain file name ending in .png (no folders, no traversal)."""
        if not PREVIEW_NAME_RE.match(name) or ".." in name:
            raise ValueError(f"invalid preview name {name!r}")
        return self.previews / name

    def save_index(self, index: DatasetIndex) -> None:
        """Write ``index`` atomically, its root relative to the folder when it lies inside it."""
        data = index.to_dict()
        root = index.root.resolve()
        if root.is_relative_to(self.root.resolve()):
            data["root"] = str(root.relative_to(self.root.resolve()))
        with atomic_path(self.index) as tmp:
            tmp.write_text(json.dumps(data), encoding="utf-8")

    def load_index(self) -> DatasetIndex:
        """The saved index, a relative root resolved inside this folder (wherever it is mounted now)."""
        index = DatasetIndex.from_json(self.index.read_text(encoding="utf-8"))
        if not index.root.is_absolute():
            index.root = self.root / index.root
        return index

    def remove(self) -> None:
        """Delete the folder and everything in it (nothing happens if it does not exist)."""
        remove_tree(self.root)

    def remove_partial(self) -> None:
        """Delete what the stages wrote, keeping the upload and its index (the job can run again)."""
        if not self.root.is_dir():
            return
        for child in self.root.iterdir():
            if child.name.startswith("upload") or child.name == self.index.name:
                continue
            if child.is_dir() and not child.is_symlink():
                remove_tree(child)
            else:
                child.unlink(missing_ok=True)
