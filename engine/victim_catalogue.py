"""The victim catalogue: who trains on protected images when protection is measured.

Protection measured only on the victims its settings were chosen on is not protection. The
catalogue therefore has two sets:

- ``TUNING``: the zoo's ResNet18, VGG16 and SENet18 and its MobileNetV2, all at width 16
  (a depthwise-separable family, added in round 9), 15 epochs, the surrogate's own recipe.
  Settings of the engine are chosen on these (``bench/efficacy``).
- ``HELD_OUT``: victims no setting is ever chosen on. They differ in what matters to an outsider:
  architectures outside the zoo (a plain CNN; torchvision's MobileNetV2, whose family the zoo has
  held since round 9 so that it can be chosen on through the tuning ``mobilenet``), longer training
  (30 and 60 epochs), other recipes (one-cycle and cosine schedules, AdamW, label smoothing, input
  standardisation with the training set's own statistics). ``sepguard evaluate`` and the
  service's "measure protection" use these by default.

Every victim is trained from scratch with crop+flip augmentation and tested on clean images after
every epoch, so both the final and the best-epoch accuracy are known (an attacker who keeps the
best epoch on a clean validation set gets the latter).

Torch-free, so that the service can name and cost victims without loading torch; the networks
and their training are in ``engine.victims``.
"""

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Victim:
    """One victim: an architecture and the recipe it is trained with."""

    name: str
    arch: str  # a zoo architecture (``models.ARCHS``) or one of ``OUTSIDE_ARCHS``
    width: float  # zoo/convnet base channel count; MobileNetV2's width multiplier
    epochs: int
    schedule: str = "triangular"
    optimizer: str = "sgd"
    lr: float = 0.1
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    standardize: bool = False  # inputs standardised with the training set's per-channel mean/std
    batch_size: int = 128


TUNING: tuple[Victim, ...] = (
    Victim("resnet18", "resnet18", 16, 15),
    Victim("vgg16", "vgg16", 16, 15),
    Victim("senet18", "senet18", 16, 15),
    Victim("mobilenet", "mobilenet", 16, 15),
)

HELD_OUT: tuple[Victim, ...] = (
    Victim("convnet-60ep", "convnet", 32, 60, schedule="onecycle", lr=0.05, label_smoothing=0.1, standardize=True),
    Victim(
        "mobilenetv2-30ep",
        "mobilenetv2",
        0.5,
        30,
        schedule="cosine",
        optimizer="adamw",
        lr=2e-3,
        weight_decay=0.05,
        label_smoothing=0.1,
        standardize=True,
    ),
    Victim("resnet18-30ep", "resnet18", 16, 30, schedule="cosine", lr=0.05, label_smoothing=0.1, standardize=True),
)

# Crossed recipes, for diagnosis only (never to choose settings or to report protection): held-out
# MobileNetV2 is barely touched by any setting while held-out ResNet18 loses 20-30 points; swapping
# their optimiser recipes tells whether the architecture or AdamW keeps the protection out.
DIAGNOSTIC: tuple[Victim, ...] = (
    replace(HELD_OUT[1], name="mobilenetv2-sgd-30ep", optimizer="sgd", lr=0.05, weight_decay=5e-4),
    replace(HELD_OUT[2], name="resnet18-adamw-30ep", optimizer="adamw", lr=2e-3, weight_decay=0.05),
)

CATALOGUE: dict[str, Victim] = {v.name: v for v in (*TUNING, *HELD_OUT, *DIAGNOSTIC)}
SETS: dict[str, tuple[Victim, ...]] = {"tuning": TUNING, "held-out": HELD_OUT, "diagnostic": DIAGNOSTIC}
OUTSIDE_ARCHS = ("convnet", "mobilenetv2")


def resolve(spec: str, epochs: int = 0) -> list[Victim]:
    """Victims named by ``spec``: comma-separated set names (``held-out``, ``tuning``) and victim
    names; ``epochs > 0`` shortens (or lengthens) every one of them (quick checks, tests)."""
    out: list[Victim] = []
    for name in (s.strip() for s in spec.split(",")):
        if not name:
            continue
        if name in SETS:
            out.extend(SETS[name])
        elif name in CATALOGUE:
            out.append(CATALOGUE[name])
        else:
            known = ", ".join([*SETS, *CATALOGUE])
            raise ValueError(f"unknown victim {name!r}; choose from {known}")
    if not out:
        raise ValueError("no victims given")
    return [replace(v, epochs=epochs) if epochs > 0 else v for v in out]
