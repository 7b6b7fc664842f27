"""Measuring protection: train victims from the catalogue (``engine.victim_catalogue``) and test them on clean images.

A protected set works when a model trained on it does badly on clean test images, whatever
architecture the trainer picks. Optional training-time defences show what removes the
protection: ``grayscale`` (train and test on gray images) and ``jpeg:Q`` (re-compress the
training images at JPEG quality Q, a known remover of ℓ∞ poisons).
"""

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import torch
from PIL import Image

from engine.progress import Progress, no_progress
from engine.victim_catalogue import Victim, resolve
from engine.victims import Split, train_victim


@dataclass
class EvalSettings:
    victims: str = "held-out"  # set and victim names of ``engine.victim_catalogue`` (comma-separated)
    epochs: int = 0  # > 0: every victim trains this many epochs instead of its own (quick checks)
    seeds: tuple[int, ...] = (0,)  # every victim is trained once per seed
    defenses: list[str] = field(default_factory=list)  # "grayscale", "jpeg:10", ...
    batch_size: int = 0  # > 0: overrides every victim's batch size (tiny test sets)
    undefended: bool = True  # also train without any defence (False: only under ``defenses``)
    resolutions: tuple[int, ...] = ()  # sizes victims train at (``compare_at_resolutions``), e.g. (32, 64)

    def resolved(self) -> list[Victim]:
        chosen = resolve(self.victims, self.epochs)
        return [replace(v, batch_size=self.batch_size) if self.batch_size > 0 else v for v in chosen]


def parse_defense(name: str) -> tuple[str, int | None]:
    """``"grayscale"`` or ``"jpeg:Q"`` -> (kind, quality); a clear error otherwise."""
    if name == "grayscale":
        return "grayscale", None
    if name.startswith("jpeg:") and name[5:].isdigit() and 1 <= int(name[5:]) <= 100:
        return "jpeg", int(name[5:])
    raise ValueError(f"unknown defence {name!r}; use 'grayscale' or 'jpeg:Q' with Q in 1..100")


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma replicated on three channels (what a grayscale-training defence does)."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    y = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return y.expand(-1, 3, -1, -1).contiguous()


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Every image re-encoded as JPEG at ``quality`` and decoded again."""
    out = np.empty(tuple(images.shape), dtype=np.uint8)
    for i, img in enumerate(images.permute(0, 2, 3, 1).numpy()):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buf).convert("RGB")).transpose(2, 0, 1)
    return torch.from_numpy(out)


def apply_defense(train: Split, test: Split, defense: str | None) -> tuple[Split, Split]:
    if defense is None:
        return train, test
    kind, quality = parse_defense(defense)
    if kind == "grayscale":
        return (grayscale(train[0]), train[1]), (grayscale(test[0]), test[1])
    return (jpeg(train[0], cast(int, quality)), train[1]), test


EvalSplits = tuple[Split | None, Split, Split]  # clean training (or None), protected training, clean test


def compare_victims(
    clean: Split | None,
    protected: Split,
    test: Split,
    num_classes: int,
    settings: EvalSettings,
    device: torch.device,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Victims (per defence and seed) trained on clean and on protected data, tested on ``test``,
    at the resolution of the images given.

    Returns ``{"victims": [{"victim", "arch", "defense", "seed", "resolution", "clean_acc",
    "clean_best_acc", "protected_acc", "protected_best_acc", "interval95"}...], "mean_clean_acc",
    "mean_protected_acc", "spread_protected_acc", "by_resolution", "test_images", "chance",
    "warnings", settings}``. Means and spreads are over the victims without a defence;
    ``interval95`` is the Wilson interval of each accuracy on this many test images.
    """
    rows = victim_rows((clean, protected, test), num_classes, settings, device, progress)
    return summarise(rows, len(test[0]), num_classes, settings)


def compare_at_resolutions(
    splits_at: Callable[[int], EvalSplits],
    num_classes: int,
    settings: EvalSettings,
    device: torch.device,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """``compare_victims`` at every resolution of ``settings.resolutions``; ``splits_at(r)`` gives
    the splits at r (loaded one resolution at a time). Top-level means are over every resolution;
    ``by_resolution`` gives them per resolution."""
    if not settings.resolutions:
        raise ValueError("no victim resolution given")
    rows: list[dict[str, Any]] = []
    test_images = 0
    for i, resolution in enumerate(settings.resolutions):
        splits = splits_at(resolution)
        if splits[1][0].shape[-1] != resolution:
            raise ValueError(f"splits at {resolution} px hold {splits[1][0].shape[-1]} px images")
        part = share(progress, [r * r for r in settings.resolutions], i)
        rows += victim_rows(splits, num_classes, settings, device, part)
        test_images = len(splits[2][0])
    return summarise(rows, test_images, num_classes, settings)


def share(progress: Progress, weights: list[int], part: int) -> Progress:
    """``progress`` for part ``part`` of one stage split in parts of the given weights (a victim at
    r px costs about r² of compute, so a 2R victim is four of an R one, not one half of the stage)."""
    before, whole = sum(weights[:part]), sum(weights)

    def report(stage: str, done: int, total: int) -> None:
        progress(stage, round(1000 * (before + weights[part] * done / max(1, total)) / whole), 1000)

    return report


def victim_rows(
    splits: EvalSplits, num_classes: int, settings: EvalSettings, device: torch.device, progress: Progress
) -> list[dict[str, Any]]:
    """One row per victim, defence and seed, trained at the resolution of the protected split."""
    clean, protected, test = splits
    resolution = int(protected[0].shape[-1])
    victims = settings.resolved()
    defenses: list[str | None] = [None, *settings.defenses] if settings.undefended else [*settings.defenses]
    kinds = ("protected", "clean") if clean is not None else ("protected",)
    runs = [(v, d, s, k) for d in defenses for v in victims for s in settings.seeds for k in kinds]
    by_key: dict[tuple[str, str | None, int], dict[str, Any]] = {}
    for i, (victim, defense, seed, kind) in enumerate(runs):

        def overall(stage: str, done: int, total: int, i: int = i) -> None:
            progress("evaluate", i * 1000 + (1000 * done) // max(1, total), len(runs) * 1000)

        train_split, test_split = apply_defense(protected if kind == "protected" else cast(Split, clean), test, defense)
        res = train_victim(victim, train_split, test_split, num_classes, seed, device, overall)
        row = by_key.setdefault(
            (victim.name, defense, seed),
            {
                "victim": victim.name,
                "arch": victim.arch,
                "defense": defense or "none",
                "seed": seed,
                "resolution": resolution,
            },
        )
        row[f"{kind}_acc"] = res["test_acc"]
        row[f"{kind}_best_acc"] = res["best_test_acc"]
        row.setdefault("interval95", {})[kind] = wilson_interval(res["test_acc"], len(test[0]))
    return list(by_key.values())


def summarise(rows: list[dict[str, Any]], test_images: int, num_classes: int, settings: EvalSettings) -> dict[str, Any]:
    """The measurement from its victim rows: means and spreads (over the undefended victims), overall
    and per resolution, the settings and any warning."""
    victims = settings.resolved()
    resolutions = list(dict.fromkeys(r["resolution"] for r in rows))
    result: dict[str, Any] = {
        "victims": rows,
        **means(rows),
        "by_resolution": [{"resolution": r, **means([v for v in rows if v["resolution"] == r])} for r in resolutions],
        "test_images": test_images,
        "chance": round(1 / num_classes, 4),
        "settings": {
            "victims": [v.name for v in victims],
            "seeds": list(settings.seeds),
            "epochs": [v.epochs for v in victims],
            "resolutions": resolutions,
        },
    }
    result["warnings"] = trust_warnings(result, num_classes)
    return result


def means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and spread of the protected (and, when measured, clean) accuracy of the undefended rows."""
    plain = [r for r in rows if r["defense"] == "none"] or rows
    out = {
        "mean_protected_acc": round(float(np.mean([r["protected_acc"] for r in plain])), 4),
        "spread_protected_acc": round(float(np.std([r["protected_acc"] for r in plain])), 4),
    }
    if all("clean_acc" in r for r in plain):
        out["mean_clean_acc"] = round(float(np.mean([r["clean_acc"] for r in plain])), 4)
        out["spread_clean_acc"] = round(float(np.std([r["clean_acc"] for r in plain])), 4)
    return out


def wilson_interval(acc: float, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of an accuracy measured on ``n`` test images."""
    if n <= 0:
        return [0.0, 1.0]
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


# below this many test images a single accuracy moves by more than ±10 points (95% interval)
MIN_TRUSTED_TEST_IMAGES = 100


def trust_warnings(result: dict[str, Any], num_classes: int) -> list[str]:
    """Plain words when the numbers cannot carry a conclusion: a small test split, or clean
    victims so weak that there is little accuracy for the protection to remove."""
    warnings: list[str] = []
    n = result["test_images"]
    if n < MIN_TRUSTED_TEST_IMAGES:
        lo, hi = wilson_interval(0.5, n)
        warnings.append(
            f"only {n} clean test images: each accuracy is uncertain by up to ±{(hi - lo) / 2:.0%} "
            f"(95% interval), so differences of a few points mean nothing; use at least {MIN_TRUSTED_TEST_IMAGES}"
        )
    clean = result.get("mean_clean_acc")
    chance = 1 / num_classes
    if clean is not None and clean < chance + 0.1:
        warnings.append(
            f"victims trained on the clean images reach only {clean:.0%} (chance is {chance:.0%}): "
            "too little was learnable to show what the protection removes"
        )
    return warnings
