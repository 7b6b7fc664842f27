"""Protection strength on real CIFAR-10 images: victims trained on protected data, tested clean.

One surrogate run is shared by every method (they differ only in crafting), so the methods are
compared on equal terms. For each method: protect wall time per stage, and the clean-test
accuracy of independently trained victims; plus victims trained on the clean set.

    python bench/efficacy.py                       # cifar10-mini, balanced preset, CPU
    python bench/efficacy.py --data DIR --preset paper --victims resnet18 --victim-width 64
    python bench/efficacy.py --methods sep-fa-vr --variant t12:steps=12 --variant m10:inner_steps=10

A ``--variant`` changes crafting fields only (T, M, alpha, ...) and reuses the shared surrogate,
so several crafting settings are compared against the same checkpoints in one run.
"""

import argparse
import functools
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import SHARED_DATA, recorded_args, write_result
from engine import stages
from engine.attacks import passes_per_image
from engine.config import preset
from engine.dataset import load_working_set, open_dataset
from engine.device import pick_device
from engine.device import settings as speed_settings
from engine.evaluate import EvalSettings, compare_victims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "cifar10-mini", help="folder with train.zip and test.zip")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--methods", default="random,single-fa,sep-fa,sep-fa-vr")
    ap.add_argument("--eps", type=float, default=8.0)
    # three victim families that a 2-core CPU can train in minutes (DenseNet121 and GoogLeNet
    # are 4-9x slower per image than ResNet18 at width 16)
    ap.add_argument("--victims", default="resnet18,vgg16,senet18")
    ap.add_argument("--victim-width", type=int, default=16)
    ap.add_argument("--victim-epochs", type=int, default=15)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (quick checks)")
    ap.add_argument("--name", default="efficacy")
    ap.add_argument("--set", action="append", default=[], help="override a preset field, e.g. --set steps=12")
    ap.add_argument(
        "--variant", action="append", default=[],
        help="NAME:field=value,... a crafting-only setting run beside the preset (repeatable)",
    )
    ap.add_argument("--no-clean", action="store_true", help="skip the victims trained on clean images")
    args = ap.parse_args()

    overrides = parse_fields(args.preset, args.set)
    variants = {"": {}} if not args.variant else {}
    for v in args.variant:
        name, _, spec = v.partition(":")
        variants[name] = parse_fields(args.preset, spec.split(",") if spec else [])
        shared = set(variants[name]) & SHARED_FIELDS
        if shared:
            raise SystemExit(f"--variant {name}: {', '.join(sorted(shared))} change the shared surrogate; use --set")
    device = pick_device()
    methods = args.methods.split(",")
    rows, timings = [], {}
    with tempfile.TemporaryDirectory(prefix="sepguard-bench-") as tmp:
        base = Path(tmp) / "base"
        cfg0 = preset(args.preset, eps=args.eps, method="sep-fa-vr", **overrides)
        t0 = time.perf_counter()
        stages.ingest(base, cfg0, source=args.data / "train.zip")
        timings["ingest"] = time.perf_counter() - t0
        if args.limit:
            trim_job(base, args.limit)
        t0 = time.perf_counter()
        stages.train(base, cfg0, device=device)
        timings["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        stages.means(base, cfg0, device=device)
        timings["means"] = time.perf_counter() - t0
        history = torch.load(base / stages.CHECKPOINTS, weights_only=True)["history"]

        test_index = open_dataset(args.data / "test.zip", Path(tmp) / "test")
        test_x, test_y = (torch.from_numpy(a) for a in load_working_set(test_index, cfg0.resolution))
        images, labels = stages.load_working(base)
        num_classes = len(stages.load_index(base).classes)
        settings = EvalSettings(
            archs=args.victims.split(","), epochs=args.victim_epochs, width=args.victim_width, seed=cfg0.seed
        )
        # the result files are rewritten after every row: a stopped run keeps what it measured
        record = functools.partial(
            save, args, overrides, timings, history, settings.archs, rows, len(images), len(test_x), device
        )
        table = record()
        if not args.no_clean:
            clean = compare_victims(None, (images, labels), (test_x, test_y), num_classes, settings, device)
            rows.append({"method": "clean (no protection)", "victims": clean["victims"], "mean_acc": clean["mean_protected_acc"]})
            table = record()
            print(table.splitlines()[-1], flush=True)
        for method, (variant, changes) in itertools.product(methods, variants.items()):
            cfg = preset(args.preset, eps=args.eps, method=method, **{**overrides, **changes})
            label = f"{method} {variant}".strip()
            job = Path(tmp) / label.replace(" ", "-")
            job.mkdir()
            for f in (stages.INDEX, stages.WORKING, stages.CHECKPOINTS, stages.MEANS, "dataset"):
                (job / f).symlink_to(base / f)
            t0 = time.perf_counter()
            for lo, hi in stages.plan_shards(job, cfg):
                stages.craft_shard(job, cfg, lo, hi, device=device)
            craft_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            stages.package(job, cfg)
            package_s = time.perf_counter() - t0
            delta = torch.from_numpy(stages.load_delta(job, cfg))
            protected = stages.apply_delta_working(images, delta, cfg.eps)
            res = compare_victims(None, (protected, labels), (test_x, test_y), num_classes, settings, device)
            uses_surrogate = method != "random"
            protect_s = timings["ingest"] + (timings["train"] + timings["means"]) * uses_surrogate + craft_s + package_s
            rows.append({
                "method": label,
                "changes": changes,
                "victims": res["victims"],
                "mean_acc": res["mean_protected_acc"],
                "passes_per_image": passes_per_image(cfg, cfg.checkpoints),
                "seconds": {"craft": round(craft_s, 1), "package": round(package_s, 1), "protect_total": round(protect_s, 1)},
            })
            table = record()
            print(table.splitlines()[-1], flush=True)

    print(table)


def save(
    args: argparse.Namespace,
    overrides: dict[str, object],
    timings: dict[str, float],
    history: list[dict],
    archs: list[str],
    rows: list[dict],
    n_train: int,
    n_test: int,
    device: torch.device,
) -> str:
    """Write the result files with the rows measured so far; return their table."""
    lines = [
        f"Dataset: {args.data.name} ({n_train} train / {n_test} clean test images), preset `{args.preset}`, "
        f"eps {args.eps:g}/255, overrides {overrides or 'none'}.",
        f"Shared stages: ingest {timings['ingest']:.0f} s, surrogate training {timings['train']:.0f} s "
        f"(final train acc {history[-1]['train_acc']:.1%}), class means {timings['means']:.0f} s.",
        f"Speed settings: {speed_settings(device)}.",
        f"Victims: {', '.join(archs)} at width {args.victim_width}, {args.victim_epochs} epochs, tested on clean images.",
        "",
        "| method | passes/image | protect wall time (s) | " + " | ".join(archs) + " | mean victim acc |",
        "|---|---|---|" + "---|" * len(archs) + "---|",
    ]
    for r in rows:
        accs = " | ".join(f"{v['protected_acc']:.1%}" for v in r["victims"])
        secs = r.get("seconds", {}).get("protect_total", "")
        lines.append(f"| {r['method']} | {r.get('passes_per_image', '')} | {secs} | {accs} | {r['mean_acc']:.1%} |")
    write_result(
        args.name,
        {"args": recorded_args(args), "shared_seconds": timings, "surrogate_history": history, "rows": rows},
        "\n".join(lines),
    )
    return "\n".join(lines)


# fields that shape the surrogate run, its checkpoints or the class means (shared by all variants)
SHARED_FIELDS = {"arch", "width", "epochs", "batch_size", "lr", "weight_decay", "resolution", "checkpoints", "seed"}


def parse_fields(preset_name: str, items: list[str]) -> dict[str, object]:
    """``field=value`` strings as typed preset overrides."""
    pairs = [item.split("=", 1) for item in items]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"expected field=value, got {items}")
    return {k: parse_field(preset_name, k, v) for k, v in pairs}


def parse_field(preset_name: str, name: str, value: str) -> object:
    """A ``--set name=value`` override converted to the field's type (``bool("0")`` would be True)."""
    kind = type(getattr(preset(preset_name), name))
    if kind is bool:
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise SystemExit(f"--set {name}: expected a boolean, got {value!r}")
        return value.lower() in ("1", "true", "yes")
    return kind(value)


def trim_job(job: Path, limit: int) -> None:
    """Keep only the first ``limit`` images of an ingested job (quick experiments)."""
    index = stages.load_index(job)
    index.entries = index.entries[:limit]
    stages.save_index(job, index)
    images, labels = stages.load_working(job)
    with open(job / stages.WORKING, "wb") as f:
        np.savez(f, images=images[:limit].numpy(), labels=labels[:limit].numpy())


if __name__ == "__main__":
    main()
