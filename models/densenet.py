"""CIFAR-style DenseNet121: a 3x3 stem of 2 x growth channels, dense blocks of
(6, 12, 24, 16) bottleneck layers, transitions halving channels and resolution, and a
final BN-ReLU before global pooling.

The paper's growth rate is 32; ``width`` scales it (growth = 32 * width / 64). Dense
blocks and transitions are torchvision's own, which match the CIFAR reference layers.
"""

import math
from dataclasses import dataclass

from torch import nn
from torchvision.models.densenet import _DenseBlock, _Transition

from models.base import Net, NetConfig

LAYERS_PER_BLOCK: tuple[int, ...] = (6, 12, 24, 16)
FULL_GROWTH_RATE = 32


@dataclass(frozen=True)
class DenseNetConfig(NetConfig):
    arch: str = "densenet121"
    bottleneck_factor: int = 4  # bottleneck 1x1 conv width = bottleneck_factor * growth
    reduction: float = 0.5  # fraction of channels a transition keeps

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bottleneck_factor < 1:
            raise ValueError(f"bottleneck_factor must be at least 1, got {self.bottleneck_factor}")
        if not 0 < self.reduction <= 1:
            raise ValueError(f"reduction must be in (0, 1], got {self.reduction}")

    @property
    def growth_rate(self) -> int:
        return self.scaled(FULL_GROWTH_RATE)


class DenseNet121(Net):
    config_class = DenseNetConfig
    config: DenseNetConfig

    def __init__(self, config: DenseNetConfig | None = None) -> None:
        super().__init__(config or self.config_class())
        growth = self.config.growth_rate
        channels = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(3, channels, kernel_size=3, padding=1, bias=False)]
        for index, num_layers in enumerate(LAYERS_PER_BLOCK):
            layers.append(
                _DenseBlock(
                    num_layers,
                    channels,
                    bn_size=self.config.bottleneck_factor,
                    growth_rate=growth,
                    drop_rate=0.0,
                )
            )
            channels += num_layers * growth
            if index < len(LAYERS_PER_BLOCK) - 1:
                reduced = max(1, math.floor(channels * self.config.reduction))
                layers.append(_Transition(channels, reduced))
                channels = reduced
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.set_layers(layers, channels)
