"""Which checkpoints of the surrogate's run make the strongest SEP ensemble (a tuning experiment).

One surrogate run of the preset keeps a snapshot every quarter epoch; every ``--placement``
picks K of them by epoch, computes their class means, crafts δ for the whole training set and
trains the victims on the result (tested on clean images). The engine spaces K checkpoints
evenly in optimiser steps; the reference keeps one whenever test accuracy improves, which
favours the early, fast-improving part of a run.

    python -m bench.checkpoint_placement --placement even:1.875,3.75,5.625,7.5,9.375,11.25,13.125,15 \\
        --placement early:0.5,1,2,3,4.5,6.5,10,15 --seed 1

``--normalize`` sets the crafting field ``balance`` (each member's input gradient scaled to
mean |g| = 1 before the ensemble combines them); ``--saturate`` is an experiment the engine does
not offer: every perturbed value moved to the ε boundary (more energy, same ℓ∞ budget).
"""

import argparse
import dataclasses
import functools
import tempfile
import time
from pathlib import Path

import torch

import models
from bench.common import SHARED_DATA, recorded_args, write_result
from bench.efficacy import parse_fields
from engine.attacks import craft, passes_per_image
from engine.config import ProtectConfig, preset
from engine.dataset import load_working_set, open_dataset
from engine.device import pick_device
from engine.evaluate import EvalSettings, compare_victims
from engine.features import class_means
from engine.resolution import resolve_resolution
from engine.stages import apply_delta_working
from engine.surrogate import train_surrogate
from engine.training import accuracy, steps_per_epoch

SNAPSHOTS_PER_EPOCH = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "cifar10-mini", help="folder with train.zip and test.zip")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--seed", type=int, default=0, help="seed of the surrogate, the crafting and the victims")
    ap.add_argument("--placement", action="append", required=True, help="NAME:epoch,epoch,... (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="override a preset field, e.g. --set method=sep")
    ap.add_argument("--normalize", action="store_true", help="balance=true: every member's gradient at mean |g| = 1")
    ap.add_argument("--saturate", action="store_true", help="move every perturbed value to the ε boundary")
    ap.add_argument("--victims", default="tuning", help="victims of engine.victim_catalogue")
    ap.add_argument("--name", default="checkpoint-placement")
    args = ap.parse_args()

    cfg0 = preset(args.preset, seed=args.seed, **parse_fields(args.preset, args.set))
    if args.normalize:
        cfg0 = dataclasses.replace(cfg0, balance=True)
    placements = {name: [float(e) for e in spec.split(",")] for name, _, spec in (p.partition(":") for p in args.placement)}
    device = pick_device()
    with tempfile.TemporaryDirectory(prefix="sepguard-bench-") as tmp:
        train_index = open_dataset(args.data / "train.zip", Path(tmp) / "train")
        cfg0 = resolve_resolution(cfg0, train_index.sizes())
        x, y = (torch.from_numpy(a) for a in load_working_set(train_index, cfg0.resolution))
        test = load_split(args.data / "test.zip", Path(tmp) / "test", cfg0.resolution)
    num_classes = int(y.max()) + 1
    t0 = time.perf_counter()
    snapshots, history = train_with_snapshots(x, y, num_classes, cfg0, device)
    train_s = time.perf_counter() - t0
    per_epoch = steps_per_epoch(len(x), cfg0.batch_size)
    settings = EvalSettings(victims=args.victims, seeds=(cfg0.seed,))
    rows: list[dict] = []
    record = functools.partial(save, args, cfg0, train_s, history, rows, len(x), len(test[0]))
    for name, epochs in placements.items():
        steps = [min(snapshots, key=lambda s: abs(s - e * per_epoch)) for e in epochs]
        nets = [models.load_checkpoint(snapshots[s]) for s in steps]
        cfg = dataclasses.replace(cfg0, checkpoints=len(nets))
        t0 = time.perf_counter()
        means = class_means(nets, x, y, num_classes, device)
        delta = craft(nets, means, x, y, num_classes, cfg, device)
        craft_s = time.perf_counter() - t0
        if args.saturate:
            delta = (delta.float().sign() * cfg.eps / 255).half()
        protected = apply_delta_working(x, delta, cfg.eps)
        res = compare_victims(None, (protected, y), test, num_classes, settings, device)
        rows.append({
            "placement": name,
            "epochs": [round(s / per_epoch, 2) for s in steps],
            "checkpoint_test_acc": [round(accuracy(n, *test, device), 3) for n in nets],
            "passes_per_image": passes_per_image(cfg, len(nets)),
            "craft_seconds": round(craft_s, 1),
            "victims": {v["victim"]: v["protected_acc"] for v in res["victims"]},
            "mean_acc": res["mean_protected_acc"],
        })
        print(record().splitlines()[-1], flush=True)


def load_split(source: Path, folder: Path, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_working_set(open_dataset(source, folder), resolution)
    return torch.from_numpy(images), torch.from_numpy(labels)


def train_with_snapshots(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: ProtectConfig, device: torch.device
) -> tuple[dict[int, dict], list[dict]]:
    """The engine's surrogate run of ``cfg`` keeping a checkpoint every quarter epoch, keyed by
    optimiser step (the engine spreads K checkpoints evenly in steps; here K is four per epoch)."""
    run = train_surrogate(x, y, num_classes, dataclasses.replace(cfg, checkpoints=SNAPSHOTS_PER_EPOCH * cfg.epochs), device)
    return {c["step"]: c for c in run.checkpoints}, run.history


def save(
    args: argparse.Namespace, cfg: ProtectConfig, train_s: float, history: list[dict], rows: list[dict],
    n_train: int, n_test: int,
) -> str:
    """Write the result files with the rows measured so far; return their table."""
    archs = [v.name for v in EvalSettings(victims=args.victims).resolved()]
    lines = [
        f"Dataset: {args.data.name} ({n_train} train / {n_test} clean test images), preset `{args.preset}` "
        f"({cfg.method}, T {cfg.steps}, M {cfg.inner_steps}, α {cfg.alpha:g}, ε {cfg.eps:g}/255), seed {cfg.seed}"
        f"{', gradients balanced per member' if cfg.balance else ''}{', δ saturated to ±ε' if args.saturate else ''}.",
        f"Surrogate: {cfg.arch} w{cfg.width}, {cfg.epochs} epochs in {train_s:.0f} s "
        f"(final train acc {history[-1]['train_acc']:.1%}).",
        f"Victims: {', '.join(archs)} (engine.victim_catalogue), tested on clean images.",
        "",
        "| placement | checkpoint epochs | their clean test acc | craft (s) | " + " | ".join(archs) + " | mean victim acc |",
        "|---|---|---|---|" + "---|" * len(archs) + "---|",
    ]
    for r in rows:
        accs = " | ".join(f"{r['victims'][a]:.1%}" for a in archs)
        lines.append(
            f"| {r['placement']} | {', '.join(f'{e:g}' for e in r['epochs'])} | "
            f"{', '.join(f'{a:.0%}' for a in r['checkpoint_test_acc'])} | {r['craft_seconds']:.0f} | {accs} | {r['mean_acc']:.1%} |"
        )
    write_result(
        args.name,
        {"args": recorded_args(args), "config": cfg.to_dict(), "train_seconds": train_s, "surrogate_history": history,
         "rows": rows},
        "\n".join(lines),
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
