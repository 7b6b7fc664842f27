"""CIFAR-style GoogLeNet: a 3x3 stem of 192 channels (no early downsampling), nine
Inception modules (3a-3b, 4a-4e, 5a-5b) with two stride-2 max-pools between the groups.

As in the CIFAR reference implementation, the "5x5" branch is two stacked 3x3 convs and
every conv is followed by BN and ReLU. Every channel count scales by width / 64.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from models.base import Net, NetConfig

STEM_CHANNELS = 192  # at full width


class InceptionSpec(NamedTuple):
    """Output channels of each branch (at full width) of one Inception module."""

    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch5x5_reduce: int
    ch5x5: int
    pool_proj: int

    def scaled(self, config: NetConfig) -> "InceptionSpec":
        return InceptionSpec(*(config.scaled(channels) for channels in self))

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


POOL = "M"
# Inception 3a, 3b, pool, 4a-4e, pool, 5a, 5b (GoogLeNet table 1).
MODULES: tuple[InceptionSpec | str, ...] = (
    InceptionSpec(64, 96, 128, 16, 32, 32),
    InceptionSpec(128, 128, 192, 32, 96, 64),
    POOL,
    InceptionSpec(192, 96, 208, 16, 48, 64),
    InceptionSpec(160, 112, 224, 24, 64, 64),
    InceptionSpec(128, 128, 256, 24, 64, 64),
    InceptionSpec(112, 144, 288, 32, 64, 64),
    InceptionSpec(256, 160, 320, 32, 128, 128),
    POOL,
    InceptionSpec(256, 160, 320, 32, 128, 128),
    InceptionSpec(384, 192, 384, 48, 128, 128),
)


@dataclass(frozen=True)
class GoogLeNetConfig(NetConfig):
    arch: str = "googlenet"


class Inception(nn.Module):
    """Four parallel branches (1x1, 3x3, double 3x3, max-pool + 1x1), concatenated on channels."""

    def __init__(self, in_channels: int, spec: InceptionSpec) -> None:
        super().__init__()
        self.branch1x1 = Conv2dNormActivation(in_channels, spec.ch1x1, kernel_size=1)
        self.branch3x3 = nn.Sequential(
            Conv2dNormActivation(in_channels, spec.ch3x3_reduce, kernel_size=1),
            Conv2dNormActivation(spec.ch3x3_reduce, spec.ch3x3, kernel_size=3),
        )
        self.branch5x5 = nn.Sequential(
            Conv2dNormActivation(in_channels, spec.ch5x5_reduce, kernel_size=1),
            Conv2dNormActivation(spec.ch5x5_reduce, spec.ch5x5, kernel_size=3),
            Conv2dNormActivation(spec.ch5x5, spec.ch5x5, kernel_size=3),
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            Conv2dNormActivation(in_channels, spec.pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1x1, self.branch3x3, self.branch5x5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


class GoogLeNet(Net):
    config_class = GoogLeNetConfig

    def __init__(self, config: GoogLeNetConfig | None = None) -> None:
        super().__init__(config or self.config_class())
        in_channels = self.config.scaled(STEM_CHANNELS)
        layers: list[nn.Module] = [Conv2dNormActivation(3, in_channels, kernel_size=3)]
        for spec in MODULES:
            if isinstance(spec, InceptionSpec):
                scaled_spec = spec.scaled(self.config)
                layers.append(Inception(in_channels, scaled_spec))
                in_channels = scaled_spec.out_channels
            else:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.set_layers(layers, in_channels)
