"""CIFAR-style MobileNetV2: a 3x3 stem and inverted residual blocks (1x1 expansion, 3x3
depthwise convolution, 1x1 linear projection), torchvision's ``InvertedResidual`` unchanged.

Not one of the SEP paper's five architectures. It is in the zoo so that a surrogate ensemble can
hold checkpoints of a depthwise-separable network: perturbations crafted on ResNet checkpoints
alone barely touch victims of this family (``bench/results/efficacy-tuning.md``, round 8). The
block table is MobileNetV2's with the stem's and the second stage's strides removed, the usual
adaptation to 32-pixel inputs (three stride-2 stages: 32 -> 4 px before pooling).
"""

from dataclasses import dataclass

from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.ops import Conv2dNormActivation

from models.base import Net, NetConfig

STEM_CHANNELS = 32  # at full width (width 64 = MobileNetV2's width multiplier 1.0)
# (expansion t, output channels c at full width, blocks n, stride s of the first block)
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
HEAD_CHANNELS = 1280  # the 1x1 convolution before pooling, at full width


@dataclass(frozen=True)
class MobileNetConfig(NetConfig):
    arch: str = "mobilenet"  # not "mobilenetv2": that name is the held-out victim's (torchvision's)


class MobileNetV2(Net):
    config_class = MobileNetConfig

    def __init__(self, config: MobileNetConfig | None = None) -> None:
        super().__init__(config or self.config_class())
        in_channels = self.config.scaled(STEM_CHANNELS)
        layers: list[nn.Module] = [Conv2dNormActivation(3, in_channels, kernel_size=3, activation_layer=nn.ReLU6)]
        for expansion, channels, num_blocks, first_stride in BLOCKS:
            out_channels = self.config.scaled(channels)
            for index in range(num_blocks):
                stride = first_stride if index == 0 else 1
                layers.append(InvertedResidual(in_channels, out_channels, stride, expansion))
                in_channels = out_channels
        head = self.config.scaled(HEAD_CHANNELS)
        layers.append(Conv2dNormActivation(in_channels, head, kernel_size=1, activation_layer=nn.ReLU6))
        self.set_layers(layers, head)
