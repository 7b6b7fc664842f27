"""Measuring protection: train victims the usual way and test them on clean images.

A protected set works when a model trained on it does badly on clean test images, whatever
architecture the trainer picks. Optional training-time defences show what removes the
protection: ``grayscale`` (train and test on gray images) and ``jpeg:Q`` (re-compress the
training images at JPEG quality Q, a known remover of ℓ∞ poisons).
"""

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

import models
from engine.progress import Progress, no_progress
from engine.training import TrainSettings, accuracy, train_classifier

Split = tuple[torch.Tensor, torch.Tensor]  # uint8 images (N,3,R,R), int64 labels


@dataclass
class EvalSettings:
    archs: list[str] = field(default_factory=lambda: ["resnet18"])
    epochs: int = 15
    width: int | None = 16
    batch_size: int = 128
    lr: float = 0.1
    seed: int = 0
    defenses: list[str] = field(default_factory=list)  # "grayscale", "jpeg:10", ...


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
    return (jpeg(train[0], quality), train[1]), test


def train_victim(
    arch: str, train: Split, test: Split, num_classes: int, settings: EvalSettings, device: torch.device,
    progress: Progress = no_progress, stage: str = "evaluate",
) -> dict:
    """Train one victim from scratch on ``train``; its top-1 accuracy on ``test``."""
    torch.manual_seed(settings.seed)
    net = models.build_model(arch, num_classes=num_classes, width=settings.width)
    ts = TrainSettings(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=settings.seed)
    history = train_classifier(net, train[0], train[1], ts, device, progress=progress, stage=stage)
    return {
        "arch": arch,
        "test_acc": round(accuracy(net, test[0], test[1], device), 4),
        "train_acc": history[-1]["train_acc"],
    }


def compare_victims(
    clean: Split | None,
    protected: Split,
    test: Split,
    num_classes: int,
    settings: EvalSettings,
    device: torch.device,
    progress: Progress = no_progress,
) -> dict:
    """Victims per architecture (and defence) trained on clean and on protected data.

    Returns ``{"victims": [{"arch", "defense", "clean_acc", "protected_acc"}...],
    "mean_clean_acc", "mean_protected_acc", "test_images", settings}``.
    """
    defenses: list[str | None] = [None, *settings.defenses]
    runs = [(a, d, kind) for d in defenses for a in settings.archs for kind in ("protected", "clean")]
    runs = [r for r in runs if r[2] == "protected" or clean is not None]
    by_key: dict[tuple[str, str | None], dict] = {}
    for i, (arch, defense, kind) in enumerate(runs):

        def overall(stage: str, done: int, total: int, i: int = i) -> None:
            progress("evaluate", i * 1000 + (1000 * done) // max(1, total), len(runs) * 1000)

        train_split, test_split = apply_defense(protected if kind == "protected" else clean, test, defense)
        acc = train_victim(arch, train_split, test_split, num_classes, settings, device, overall)["test_acc"]
        by_key.setdefault((arch, defense), {"arch": arch, "defense": defense or "none"})[f"{kind}_acc"] = acc
    rows = list(by_key.values())
    plain = [r for r in rows if r["defense"] == "none"]
    result: dict = {
        "victims": rows,
        "mean_protected_acc": round(float(np.mean([r["protected_acc"] for r in plain])), 4),
        "test_images": len(test[0]),
        "settings": {"epochs": settings.epochs, "width": settings.width, "archs": settings.archs},
    }
    if clean is not None:
        result["mean_clean_acc"] = round(float(np.mean([r["clean_acc"] for r in plain])), 4)
    return result
