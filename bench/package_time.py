"""Wall time of the packaging stage alone, with one thread and with the threads sepguard uses.

Packaging stretches δ to every image, adds it, encodes the result and measures its distortion;
on photographs it was a third of ``protect``'s time with one thread. The perturbation here is
uniform noise at R = 32 (its values do not change the work), so no surrogate is needed. Both
runs must write the same files in the same order, byte for byte.

    python -m bench.package_time --data ../shared/datasets/clothing-small/train.zip

Run it on a quiet machine: times from runs that overlap other work are not comparable.
"""

import argparse
import hashlib
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from bench.common import SHARED_DATA, recorded_args, write_result
from engine import package
from engine.dataset import open_dataset


def members_digest(path: Path) -> str:
    """SHA-256 of every member's name and bytes, in order (a zip's own bytes hold the time)."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            digest.update(info.filename.encode() + b"\0" + zf.read(info))
    return digest.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "clothing-small" / "train.zip")
    ap.add_argument("--eps", type=float, default=8.0)
    ap.add_argument("--name", default="package-time")
    args = ap.parse_args()
    threads = package.package_threads()
    with tempfile.TemporaryDirectory(prefix="sepguard-bench-") as tmp:
        index = open_dataset(args.data, Path(tmp) / "work")
        n = len(index.entries)
        rng = np.random.default_rng(0)
        delta = (rng.uniform(-args.eps, args.eps, (n, 3, 32, 32)) / 255).astype(np.float32)
        seconds, digests = {}, set()
        for count in dict.fromkeys((1, threads)):
            out = Path(tmp) / f"threads{count}.zip"
            t0 = time.perf_counter()
            package.write_protected_zip(index, delta, out, args.eps, threads=count)
            seconds[count] = round(time.perf_counter() - t0, 1)
            digests.add(members_digest(out))
            out.unlink()
    if len(digests) != 1:
        raise SystemExit("the zips written with one thread and with several differ")
    lines = [
        f"Packaging {n} images of {args.data.parent.name}/{args.data.name} (δ: uniform noise ±{args.eps:g}/255 at R = 32), PNG output; "
        "every run wrote the same files, byte for byte.",
        "",
        "| threads | seconds | images per second |",
        "|---|---|---|",
        *(f"| {k} | {v} | {n / v:.1f} |" for k, v in seconds.items()),
    ]
    write_result(args.name, {"args": recorded_args(args), "images": n, "seconds_by_threads": seconds}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
