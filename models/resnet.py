"""CIFAR-style ResNet18: a 3x3 stem (no max-pool) and four stages of two basic blocks.

This is the surrogate of the SEP paper. torchvision's ``BasicBlock`` is the ImageNet
block unchanged; only the stem differs from ImageNet ResNet, because 32x32 inputs cannot
afford the 7x7 stride-2 stem and max-pool.
"""

from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import Conv2dNormActivation

from models.base import Net, NetConfig, global_pool

STAGE_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)  # at full width
BLOCKS_PER_STAGE: tuple[int, ...] = (2, 2, 2, 2)


@dataclass(frozen=True)
class ResNetConfig(NetConfig):
    arch: str = "resnet18"


class Subsample(nn.Module):
    """Every ``stride``-th pixel in both directions (what a 1x1 conv with that stride reads)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x[..., :: self.stride, :: self.stride]


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """1x1 conv + BN where a block changes shape, ``None`` (identity) where it does not.

    The stride is taken by subsampling before a stride-1 conv (the same function): on an
    AVX-512 CPU, torch 2.14's channels_last backward of a 1x1 stride-2 conv with 8 input
    channels corrupts the heap for odd batch sizes (width-8 nets, the ``fast`` preset, crashed
    in training whenever a dataset's last batch was odd).
    """
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        Subsample(stride),
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ResNet18(Net):
    config_class = ResNetConfig

    def __init__(self, config: ResNetConfig | None = None) -> None:
        super().__init__(config or self.config_class())
        in_channels = self.config.scaled(STAGE_CHANNELS[0])
        self.stem = Conv2dNormActivation(3, in_channels, kernel_size=3)
        blocks: list[nn.Module] = []
        for stage, (channels, num_blocks) in enumerate(zip(STAGE_CHANNELS, BLOCKS_PER_STAGE)):
            out_channels = self.config.scaled(channels)
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(self.make_block(in_channels, out_channels, stride))
                in_channels = out_channels
        self.stages = nn.Sequential(*blocks)
        self.pool = global_pool()
        self.feature_dim = in_channels
        self.classifier = nn.Linear(in_channels, self.config.num_classes)

    def make_block(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        """One residual block; SENet18 overrides this to add squeeze-excitation."""
        shortcut = projection_shortcut(in_channels, out_channels, stride)
        block: nn.Module = BasicBlock(in_channels, out_channels, stride=stride, downsample=shortcut)
        return block

    def embed(self, normalized: Tensor) -> Tensor:
        feature: Tensor = self.pool(self.stages(self.stem(normalized)))
        return feature
