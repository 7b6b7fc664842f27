"""What every network of the zoo shares: its config, in-net normalisation and the
``features`` / ``forward`` split.

Attacks optimise perturbations in [0, 1] pixel space, so each net normalises its own
input with the CIFAR-10 statistics; callers never touch the normalisation.
Feature alignment (SEP-FA) needs the penultimate feature, so every net exposes
``features(x)`` and defines ``forward(x)`` as ``classifier(features(x))``: the logits and
the aligned features can never drift apart.
"""

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

FULL_WIDTH = 64  # the paper's base channel count; other widths scale every layer by width / 64


@dataclass(frozen=True)
class NetConfig:
    """Fields every architecture has; subclasses set ``arch`` and may add their own.

    All fields are plain scalars so that ``asdict(config)`` survives a JSON round trip
    and ``ConfigClass(**asdict(config))`` rebuilds the same network.
    """

    arch: str = ""
    num_classes: int = 10
    width: int = FULL_WIDTH  # base channel count (64 = the paper's full width)

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if self.width < 1:
            raise ValueError(f"width must be at least 1, got {self.width}")

    def scaled(self, channels: int) -> int:
        """``channels`` of the full-width network, scaled to this config's width (at least 1)."""
        return max(1, round(channels * self.width / FULL_WIDTH))


class Net(nn.Module):
    """Base of every architecture: images in [0, 1] (N, 3, H, W) -> logits.

    Subclasses build their layers, set ``feature_dim`` and ``classifier`` and implement
    ``embed`` (normalised images -> (N, feature_dim)).
    """

    config_class: ClassVar[type[NetConfig]] = NetConfig
    config: NetConfig
    feature_dim: int
    classifier: nn.Linear
    pixel_mean: Tensor
    pixel_std: Tensor

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        expected_arch = self.config_class.arch
        if config.arch != expected_arch:
            raise ValueError(f"{type(self).__name__} needs a config for {expected_arch!r}, got {config.arch!r}")
        self.config = config
        # Constants, not weights: kept out of the state dict but moved with .to(device).
        self.register_buffer("pixel_mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """[0, 1] pixels -> CIFAR-10 standardised input of the first layer."""
        return (images - self.pixel_mean) / self.pixel_std

    def set_layers(self, layers: list[nn.Module], channels: int) -> None:
        """The common plain-stack layout: ``body`` (the layers), global pooling, and a linear
        classifier over the ``channels`` of the last layer (used by ``embed`` below)."""
        self.body = nn.Sequential(*layers)
        self.pool = global_pool()
        self.feature_dim = channels
        self.classifier = nn.Linear(channels, self.config.num_classes)

    def embed(self, normalized: Tensor) -> Tensor:
        """Normalised images -> penultimate feature (N, feature_dim); plain stacks built with
        ``set_layers`` need nothing more, other layouts override this."""
        feature: Tensor = self.pool(self.body(normalized))
        return feature

    def features(self, images: Tensor) -> Tensor:
        """Images in [0, 1] -> penultimate feature (N, feature_dim), the classifier's input."""
        return self.embed(self.normalize(images))

    def forward(self, images: Tensor) -> Tensor:
        """Images in [0, 1] -> logits (N, num_classes)."""
        logits: Tensor = self.classifier(self.features(images))
        return logits


def global_pool() -> nn.Sequential:
    """Global average pooling + flatten, so any input size >= 16 gives a (N, C) feature."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
