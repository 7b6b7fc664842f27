"""Peak memory of `sepguard protect` on a dataset of large photographs (target: <= 4 GB).

Generates N photographs of about 2048x1536 (CIFAR-10 images from cifar10-mini upscaled, plus a
little noise so that they compress like photographs, JPEG quality 90, in class folders, zipped)
in a temporary folder, runs `sepguard protect` with the fast preset and tiny overrides as a
subprocess, and samples the resident memory of it and its children every 0.1 s (psutil).
Reports the peak RSS overall and per stage, the wall time of every stage and the output size.

    python -m bench.memory                                   # 2,000 images
    python -m bench.memory --images 200 --name memory-small  # a quick check
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from multiprocessing import Pool
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import psutil
from PIL import Image

from bench.common import SHARED_DATA, recorded_args, write_result

GB = 1024**3
MB = 1024**2
STAGES = ("ingest", "train", "means", "craft", "package")


def source_images(train_zip: Path, count: int) -> list[tuple[str, bytes]]:
    """(class folder, image bytes) of ``count`` images of a class-folder zip, taken from the
    classes in turn (cycling if the zip has fewer)."""
    with zipfile.ZipFile(train_zip) as zf:
        by_class: dict[str, list[str]] = {}
        for n in sorted(zf.namelist()):
            if not n.endswith("/") and len(PurePosixPath(n).parts) >= 2:
                by_class.setdefault(PurePosixPath(n).parts[-2], []).append(n)
        names = [n for group in zip(*by_class.values()) for n in group]
        picked = [names[i % len(names)] for i in range(count)]
        return [(PurePosixPath(n).parts[-2], zf.read(n)) for n in picked]


def make_photo(job: tuple[int, str, bytes, int, int, Path]) -> tuple[str, int]:
    i, cls, data, width, height, out_dir = job
    small = Image.open(io.BytesIO(data)).convert("RGB")
    big = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    rng = np.random.default_rng(i)
    noise = rng.integers(-3, 4, size=big.shape, dtype=np.int16)
    pixels = np.clip(big + noise, 0, 255).astype(np.uint8)
    path = out_dir / cls / f"photo-{i:05d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return f"{cls}/{path.name}", path.stat().st_size


def generate(train_zip: Path, count: int, width: int, height: int, tmp: Path, processes: int) -> tuple[Path, int]:
    folder = tmp / "photos"
    jobs = [(i, cls, data, width, height, folder) for i, (cls, data) in enumerate(source_images(train_zip, count))]
    with Pool(processes) as pool:
        made = pool.map(make_photo, jobs, chunksize=8)
    out = tmp / "photos.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for rel, _ in made:
            zf.write(folder / rel, rel)
            (folder / rel).unlink()  # only the zip is kept (disk space)
    return out, sum(size for _, size in made)


class RssSampler(threading.Thread):
    """Samples the RSS of a process and all its children every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (time, total rss, main process rss)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                main = self.proc.memory_info().rss
                total = main
                for child in self.proc.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.samples.append((time.time(), total, main))
            except psutil.Error:
                break
            self.stop.wait(self.interval)


def stage_windows(workdir: Path, start: float, end: float) -> dict[str, tuple[float, float]]:
    """(start, end) wall-clock window of every stage, from the mtimes and durations of timings/*.json."""
    windows: dict[str, tuple[float, float]] = {}
    for f in (workdir / "timings").glob("*.json"):
        entry = json.loads(f.read_text())
        name = "craft" if entry["stage"].startswith("craft-") else entry["stage"]
        stop = f.stat().st_mtime
        lo, hi = stop - entry["seconds"], stop
        if name in windows:
            lo, hi = min(lo, windows[name][0]), max(hi, windows[name][1])
        windows[name] = (max(lo, start), min(hi, end))
    return windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "cifar10-mini", help="folder with train.zip")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1536)
    ap.add_argument("--processes", type=int, default=2, help="processes generating the photographs")
    ap.add_argument("--output-format", default="png", help="png | keep")
    ap.add_argument("--protect-args", default="--preset fast --epochs 1 --steps 2 --checkpoints 2 --inner-steps 1")
    ap.add_argument("--limit-gb", type=float, default=4.0)
    ap.add_argument(
        "--package-seconds", type=float, default=0,
        help="stop the run this long after packaging started (0: run to the end); the package stage "
        "works one image at a time, so its memory does not grow with the number of images",
    )
    ap.add_argument("--tmp", type=Path, default=None, help="where to generate (default: the system's temp folder)")
    ap.add_argument("--name", default="memory")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="sepguard-memory-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        dataset, raw_bytes = generate(args.data / "train.zip", args.images, args.width, args.height, tmp, args.processes)
        gen_s = time.perf_counter() - t0
        print(f"generated {args.images} photographs in {gen_s:.0f} s, zip {dataset.stat().st_size / MB:.0f} MB", flush=True)
        out_zip = tmp / "protected.zip"
        workdir = tmp / "work"
        cmd = [
            sys.executable, "-m", "app", "protect", str(dataset), "--output", str(out_zip), "--workdir", str(workdir),
            "--output-format", args.output_format, *args.protect_args.split(),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        start = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler = RssSampler(proc.pid)
        sampler.start()
        stopped_early = False
        if args.package_seconds > 0:
            package_start = None
            while proc.poll() is None:
                if package_start is None and (workdir / "previews" / "previews.json").exists():
                    package_start = time.time()  # previews are the first thing the package stage writes
                if package_start is not None and time.time() - package_start > args.package_seconds:
                    proc.terminate()
                    stopped_early = True
                    break
                time.sleep(0.5)
        output = proc.communicate()[0]
        end = time.time()
        sampler.stop.set()
        sampler.join()
        if proc.returncode != 0 and not stopped_early:
            print(output[-5000:])
            raise SystemExit(f"sepguard protect failed with exit code {proc.returncode}")
        windows = stage_windows(workdir, start, end)
        if stopped_early:  # the package stage wrote no timing: it ran from the end of crafting to the stop
            windows["package"] = (max(hi for _, hi in windows.values()), end)
        per_stage: dict[str, Any] = {}
        for stage in STAGES:
            if stage not in windows:
                continue
            lo, hi = windows[stage]
            inside = [s for s in sampler.samples if lo <= s[0] <= hi]
            per_stage[stage] = {
                "seconds": round(hi - lo, 1),
                "peak_rss_mb": round(max((s[1] for s in inside), default=0) / MB),
            }
        packaged = None
        if stopped_early:  # images written so far: local file headers in the unfinished zip
            parts = list(workdir.glob(f".protected.zip.*.part"))
            packaged = sum(part.read_bytes().count(b"PK\x03\x04") for part in parts) if parts else None
        report: dict[str, Any] = {}
        files = 0
        if out_zip.exists():
            with zipfile.ZipFile(out_zip) as zf:
                report = json.loads(zf.read("report.json"))
                files = len([n for n in zf.namelist() if not n.endswith(".json")])
        peak_total = max(s[1] for s in sampler.samples)
        peak_main = max(s[2] for s in sampler.samples)
        result = {
            "images": args.images,
            "size": [args.width, args.height],
            "dataset_zip_mb": round(dataset.stat().st_size / MB, 1),
            "generate_seconds": round(gen_s, 1),
            "command": " ".join(["sepguard", *cmd[3:]]).replace(str(tmp), "$TMP"),
            "wall_seconds": round(end - start, 1),
            "peak_rss_mb": round(peak_total / MB),
            "peak_rss_main_mb": round(peak_main / MB),
            "limit_gb": args.limit_gb,
            "within_limit": peak_total <= args.limit_gb * GB,
            "per_stage": per_stage,
            "report_timings_seconds": report.get("timings_seconds"),
            "stopped_during_package": stopped_early,
            "images_packaged_before_stop": packaged,
            "output_zip_mb": round(out_zip.stat().st_size / MB, 1) if out_zip.exists() else None,
            "output_files": files,
            "samples": len(sampler.samples),
        }
    lines = [
        f"{args.images} JPEG photographs of {args.width}x{args.height} (quality 90, class folders, "
        f"zip {result['dataset_zip_mb']} MB), `{result['command']}`.",
        "",
        f"**Peak resident memory: {result['peak_rss_mb']} MB** (process and children, sampled every 0.1 s; "
        f"limit {args.limit_gb:g} GB: {'within' if result['within_limit'] else 'EXCEEDED'}). "
        f"Wall time {result['wall_seconds']} s. "
        + (
            f"Stopped {args.package_seconds:g} s into the package stage (not run to the end; "
            f"about {packaged} images packaged by then)."
            if stopped_early
            else f"Output zip: {result['output_zip_mb']} MB, {files} images ({args.output_format})."
        ),
        "",
        "| stage | seconds | peak RSS (MB) |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['seconds']} | {v['peak_rss_mb']} |" for k, v in per_stage.items()]
    write_result(args.name, {"args": recorded_args(args), **result}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
