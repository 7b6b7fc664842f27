"""Small real inputs shared by the engine tests."""

import zipfile
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

# the smallest run that still trains, crafts in two shards and packages: seconds on a CPU
TINY = dict(width=8, epochs=1, checkpoints=2, steps=1, inner_steps=1, craft_batch=16, shard_size=32, batch_size=32)


def write_small_zip(out: Path, per_class: int = 16, classes: tuple[str, ...] = ("cat", "dog", "ship")) -> Path:
    """The first ``per_class`` sample images of each of ``classes``, in their class folders."""
    counts: dict[str, int] = {}
    with zipfile.ZipFile(SAMPLES / "cifar10-train.zip") as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            cls = info.filename.split("/")[0]
            if cls in classes and counts.get(cls, 0) < per_class:
                counts[cls] = counts.get(cls, 0) + 1
                dst.writestr(info.filename, src.read(info))
    return out
