"""Protection strength on real CIFAR-10 images: a yardstick with tuning and held-out victims.

Victims from ``engine.victim_catalogue`` train on the protected images and are tested on clean
ones. Settings are chosen on the **tuning** victims; the **held-out** victims (other architecture
families, 30-60 epochs, other recipes) never choose anything and are reported beside them. Every
seed is a whole run (surrogate, crafting and victims); a change counts only when it holds on the
held-out victims in every seed.

One surrogate run per seed is shared by every row (rows differ only in crafting), so rows are
compared on equal terms.

    python -m bench.efficacy --seeds 0,1                         # cifar10-mini, balanced, all rows
    python -m bench.efficacy --rows default,sep-fa-vr --defended default --defenses grayscale,jpeg:10
    python -m bench.efficacy --row t12:steps=12 --row m8:inner_steps=8 --victims tuning
    python -m bench.efficacy --data DIR --preset paper --victims held-out     # GPU, full CIFAR-10
    python -m bench.efficacy --data ../shared/datasets/clothing-small --victim-resolutions 64,128  # photos

Victims train at the working resolution R by default. ``--victim-resolutions`` trains them at the
given sizes instead: at R on the crafting copies (plus δ as crafted), elsewhere on the protected
images as downloaded (``engine.protected_set``) and on the clean images, all resized alike.
``--victim-view crop`` has every victim resize the short side and keep the centre square (at R
too, then from the downloaded images), as many trainers of photographs do, instead of squashing
the whole frame as sepguard crafts.

Per seed, results go to ``bench/results/<name>-seed<S>.json``; ``<name>.md`` and ``<name>.json``
summarise every seed file of that name present (so seeds may run as separate processes).
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.common import RESULTS, SHARED_DATA, recorded_args, write_result
from engine import stages
from engine.attacks import passes_per_image
from engine.config import ProtectConfig, preset
from engine.dataset import VIEWS, load_working_set, open_dataset
from engine.device import pick_device
from engine.device import settings as speed_settings
from engine.evaluate import EvalSettings, compare_victims
from engine.job_dir import JobDir
from engine.protected_set import load_protected_set
from engine.resolution import resolve_resolution
from engine.victim_catalogue import HELD_OUT, SETS, TUNING

# the paper's methods as published: none of this project's additions
PLAIN = dict(balance=False, gray=0.0, ce_weight=0.0, class_pattern=0.0, augment=False, lowres=0.0)
ROWS: dict[str, dict[str, object]] = {
    "random": dict(PLAIN, method="random"),
    "single-fa": dict(PLAIN, method="single-fa"),
    "sep-fa": dict(PLAIN, method="sep-fa"),
    "sep-fa-vr": dict(PLAIN, method="sep-fa-vr"),
    "sep": dict(PLAIN, method="sep"),
    "default": {},  # the preset as it ships
    "default+class-pattern": dict(class_pattern=4.0),
    # the preset without its crop+flip views of x+δ (rounds 10-11 measured them as "default+augment",
    # against a default without them; since round 11 the default has them)
    "default-augment": dict(augment=False),
}
SET_OF = {v.name: set_name for set_name, victims in SETS.items() for v in victims}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED_DATA / "cifar10-mini", help="folder with train.zip and test.zip")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--eps", type=float, default=8.0)
    ap.add_argument("--seeds", default="0", help="comma-separated; each seed is a whole run")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"rows to measure, from: {', '.join(ROWS)}")
    ap.add_argument("--row", action="append", default=[], help="NAME:field=value,... an extra crafting setting")
    ap.add_argument("--victims", default="tuning,held-out")
    ap.add_argument("--victim-epochs", type=int, default=0, help="> 0: every victim trains this long (quick checks)")
    ap.add_argument("--victim-resolutions", default="", help="sizes in px victims train at, e.g. 64,128 (default: R)")
    ap.add_argument("--victim-view", default="squash", choices=VIEWS, help="how victims bring photos to their size")
    ap.add_argument("--defenses", default="", help="e.g. grayscale,jpeg:10 (held-out victims, rows in --defended)")
    ap.add_argument("--defended", default="default", help="rows also measured under --defenses")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (quick checks)")
    ap.add_argument("--name", default="efficacy")
    ap.add_argument("--set", action="append", default=[], help="override a preset field for every row")
    ap.add_argument("--no-clean", action="store_true", help="skip the victims trained on clean images")
    args = ap.parse_args()

    overrides = parse_fields(args.preset, args.set)
    rows = {name: ROWS[name] for name in args.rows.split(",") if name}
    for spec in args.row:
        name, _, fields = spec.partition(":")
        rows[name] = parse_fields(args.preset, fields.split(",") if fields else [])
    for name, changes in rows.items():
        shared = set(changes) & SHARED_FIELDS
        if shared:
            raise SystemExit(f"row {name}: {', '.join(sorted(shared))} change the shared surrogate; use --set")
    for seed in (int(s) for s in args.seeds.split(",")):
        run_seed(args, overrides, rows, seed)
    print(summarise(args.name))


def run_seed(args: argparse.Namespace, overrides: dict[str, object], rows: dict[str, dict], seed: int) -> None:
    """One whole run: surrogate, clean victims, then every row's crafting and victims."""
    device = pick_device()
    out: dict = {"args": recorded_args(args), "seed": seed, "overrides": overrides, "rows": []}
    with tempfile.TemporaryDirectory(prefix="sepguard-bench-") as tmp:
        base = JobDir(Path(tmp) / "base")
        cfg0 = preset(args.preset, eps=args.eps, seed=seed, **overrides)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        stages.ingest(base, cfg0, source=args.data / "train.zip")
        timings["ingest"] = time.perf_counter() - t0
        cfg0 = resolve_resolution(cfg0, base.load_index().sizes())  # the R ingest chose; the test set's too
        if args.limit:
            trim_job(base, args.limit)
        for stage in (stages.train, stages.means):
            t0 = time.perf_counter()
            stage(base, cfg0, device=device)
            timings[stage.__name__] = time.perf_counter() - t0
        out["shared_seconds"] = timings
        out["surrogate_history"] = torch.load(base.checkpoints, weights_only=True)["history"]
        out["speed_settings"] = str(speed_settings(device))
        test_index = open_dataset(args.data / "test.zip", Path(tmp) / "test")
        resolutions = [int(r) for r in split(args.victim_resolutions)] or [cfg0.resolution]
        view = args.victim_view
        tests = {r: to_split(load_working_set(test_index, r, view=view)) for r in resolutions}
        images, labels = stages.load_working(base)
        num_classes = len(base.load_index().classes)
        out["train_images"], out["test_images"] = len(images), len(test_index.entries)
        out["resolution"], out["victim_resolutions"], out["victim_view"] = cfg0.resolution, resolutions, view
        victims = EvalSettings(victims=args.victims, epochs=args.victim_epochs, seeds=(seed,))
        defended = EvalSettings(
            victims="held-out", epochs=args.victim_epochs, seeds=(seed,), defenses=split(args.defenses),
            undefended=False,
        )

        def measure(label: str, train_at: Callable[[int], tuple], extra: dict, defend: bool) -> None:
            out["rows"].append({"row": label, **extra, "victims": []})
            for r in resolutions:  # one training set in memory at a time
                train = train_at(r)
                res = compare_victims(None, train, tests[r], num_classes, victims, device)
                out["rows"][-1]["victims"] += res["victims"]
                if defend and defended.defenses:
                    res = compare_victims(None, train, tests[r], num_classes, defended, device)
                    out["rows"][-1]["victims"] += res["victims"]
                save_seed(args.name, seed, out)
                print(summarise(args.name).splitlines()[-1], flush=True)

        def clean_at(r: int) -> tuple:
            if r == cfg0.resolution and view == "squash":
                return images, labels
            return to_split(load_working_set(base.load_index(), r, view=view))

        if not args.no_clean:
            measure("clean (no protection)", clean_at, {}, defend=True)
        for label, changes in rows.items():
            cfg = preset(args.preset, eps=args.eps, seed=seed, **{**overrides, **changes})
            job = JobDir(Path(tmp) / label.replace(" ", "-"))
            job.root.mkdir()
            for f in (base.index, base.working, base.checkpoints, base.means, base.dataset):
                (job.root / f.name).symlink_to(f)
            t0 = time.perf_counter()
            for lo, hi in stages.plan_shards(job, cfg):
                stages.craft_shard(job, cfg, lo, hi, device=device)
            craft_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            stages.package(job, cfg)
            package_s = time.perf_counter() - t0
            delta = stages.load_delta(job, cfg)

            def protected_at(r: int, cfg: ProtectConfig = cfg, delta: np.ndarray = delta) -> tuple:
                if r == cfg0.resolution and view == "squash":
                    return stages.apply_delta_working(images, torch.from_numpy(delta), cfg.eps), labels
                return torch.from_numpy(load_protected_set(base.load_index(), delta, cfg, r, view=view)), labels

            surrogate_s = (timings["train"] + timings["means"]) * (cfg.method != "random")
            extra = {
                "changes": changes,
                "passes_per_image": passes_per_image(cfg, cfg.checkpoints),
                "seconds": {
                    "craft": round(craft_s, 1), "package": round(package_s, 1),
                    "protect_total": round(timings["ingest"] + surrogate_s + craft_s + package_s, 1),
                },
            }
            measure(label, protected_at, extra, defend=label in split(args.defended))


def save_seed(name: str, seed: int, data: dict) -> None:
    """This seed's result file, rewritten after every row (a stopped run keeps what it measured)."""
    write_result(f"{name}-seed{seed}", data, f"Rows measured so far: {len(data['rows'])}; summary in {name}.md")


def summarise(name: str) -> str:
    """``<name>.md`` / ``.json`` from every seed file of ``name``: per victim resolution, row and victim
    set, the mean victim accuracy (final and best epoch) over victims and seeds, its spread, and each
    seed's mean. Victims of seed files written before resolutions were recorded count as at R."""
    per_seed = {}
    for f in sorted(RESULTS.glob(f"{name}-seed*.json")):
        data = json.loads(f.read_text())
        per_seed[data["seed"]] = data
    seeds = sorted(per_seed)
    rows_by_label = {s: {r["row"]: r for r in per_seed[s]["rows"]} for s in seeds}
    table: dict[tuple[int, str, str, str], dict[int, list[dict]]] = {}
    for seed in seeds:
        for row in per_seed[seed]["rows"]:
            for v in row["victims"]:
                at = v.get("resolution", per_seed[seed].get("resolution", 0))
                key = (at, row["row"], SET_OF.get(v["victim"], "other"), v["defense"])
                table.setdefault(key, {}).setdefault(seed, []).append(v)
    any_seed = per_seed[seeds[0]] if seeds else {}
    lines = [
        f"Dataset: {any_seed.get('train_images')} train / {any_seed.get('test_images')} clean test images; "
        f"args {any_seed.get('args')}.",
        f"Seeds: {', '.join(map(str, seeds))} (each a whole run: surrogate, crafting, victims).",
        f"Speed settings: {any_seed.get('speed_settings')}.",
        "Victims: tuning = " + ", ".join(v.name for v in TUNING) + "; held-out = " + ", ".join(v.name for v in HELD_OUT) + ".",
        "Accuracy on clean test images: mean over victims and seeds ± spread (std over seed means); "
        "best = each victim's best epoch; per seed = that seed's mean.",
        f"Working resolution R: {any_seed.get('resolution', '?')} px; victims at px below: at R on the crafting "
        "copies, at other sizes on the protected images as downloaded, resized like the clean ones.",
    ]
    summary: list[dict] = []
    for (at, label, vset, defense), by_seed in sorted(table.items(), key=lambda item: item[0][0]):
        if not summary or summary[-1]["resolution"] != at:
            heading = f"### Victims at {at} px" if at else "### Victims at R (older seed files: not recorded)"
            lines += ["", heading, "", TABLE_HEAD, "|---|---|---|---|---|---|---|---|"]
        seed_means = {s: statistics.mean(v["protected_acc"] for v in vs) for s, vs in by_seed.items()}
        everything = [v for vs in by_seed.values() for v in vs]
        mean = statistics.mean(v["protected_acc"] for v in everything)
        best = statistics.mean(v["protected_best_acc"] for v in everything)
        spread = statistics.pstdev(seed_means.values()) if len(seed_means) > 1 else 0.0
        rows_of = [rows_by_label[s][label] for s in sorted(by_seed)]
        row = rows_of[0]
        protect = [r["seconds"]["protect_total"] for r in rows_of if "seconds" in r]
        summary.append({
            "resolution": at, "row": label, "victims": vset, "defense": defense,
            "mean_acc": round(mean, 4), "best_acc": round(best, 4),
            "spread": round(spread, 4), "per_seed": {str(s): round(m, 4) for s, m in seed_means.items()},
            "passes_per_image": row.get("passes_per_image"), "protect_seconds": protect,
        })
        lines.append(
            f"| {label} | {vset} | {defense} | {row.get('passes_per_image', '')} | "
            f"{', '.join(f'{p:.0f}' for p in protect)} | {mean:.1%} ± {spread:.1%} | {best:.1%} | "
            + ", ".join(f"{s}: {m:.1%}" for s, m in sorted(seed_means.items())) + " |"
        )
    lines += per_victim_table(table)
    write_result(name, {"seeds": seeds, "summary": summary}, "\n".join(lines))
    return "\n".join(lines)


def per_victim_table(table: dict[tuple[int, str, str, str], dict[int, list[dict]]]) -> list[str]:
    """Each victim's final accuracy per seed, by resolution, row and defence (from the table the means
    are taken over): the means hide which victims the protection reaches."""
    cells: dict[tuple[int, str, str, str], dict[int, float]] = {}
    for (at, label, _, defense), by_seed in table.items():
        for seed, victims in by_seed.items():
            for v in victims:
                cells.setdefault((at, label, v["victim"], defense), {})[seed] = v["protected_acc"]
    lines = ["", "### Per victim (final accuracy per seed)", "", "| px | row | victim | defence | per seed |", "|---|---|---|---|---|"]
    for (at, label, victim, defense), accs in sorted(cells.items(), key=lambda item: item[0][0]):
        lines.append(f"| {at} | {label} | {victim} | {defense} | " + ", ".join(f"{s}: {a:.1%}" for s, a in sorted(accs.items())) + " |")
    return lines


TABLE_HEAD = "| row | victims | defence | passes/image | protect (s) | mean acc | best-epoch acc | per seed |"


def to_split(arrays: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) arrays as tensors."""
    return torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1])


def split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# fields that shape the surrogate run, its checkpoints or the class means (shared by all rows)
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


def trim_job(job: JobDir, limit: int) -> None:
    """Keep only the first ``limit`` images of an ingested job (quick experiments)."""
    index = job.load_index()
    index.entries = index.entries[:limit]
    job.save_index(index)
    images, labels = stages.load_working(job)
    with open(job.working, "wb") as f:
        np.savez(f, images=images[:limit].numpy(), labels=labels[:limit].numpy())


if __name__ == "__main__":
    main()
