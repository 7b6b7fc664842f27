"""CIFAR-style VGG16 with batch norm: thirteen 3x3 conv-BN-ReLU layers, five 2x2 max-pools
and a single linear classifier on the (pooled) last conv feature.

The max-pools use ``ceil_mode`` so that inputs down to 16x16 (1x1 before the fifth pool)
still work; for 32x32 and 64x64 inputs this is identical to the usual floor mode.
"""

from dataclasses import dataclass

from torch import nn
from torchvision.ops import Conv2dNormActivation

from models.base import Net, NetConfig

POOL = "M"
# Channels of each conv layer at full width, "M" = 2x2 max-pool (VGG configuration D).
LAYERS: tuple[int | str, ...] = (
    64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL,
)  # fmt: skip


@dataclass(frozen=True)
class VGGConfig(NetConfig):
    arch: str = "vgg16"


class VGG16(Net):
    config_class = VGGConfig

    def __init__(self, config: VGGConfig | None = None) -> None:
        super().__init__(config or self.config_class())
        layers: list[nn.Module] = []
        in_channels = 3
        for spec in LAYERS:
            if spec == POOL:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                out_channels = self.config.scaled(int(spec))
                layers.append(Conv2dNormActivation(in_channels, out_channels, kernel_size=3))
                in_channels = out_channels
        self.set_layers(layers, in_channels)
