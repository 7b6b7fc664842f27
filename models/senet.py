"""SENet18: the CIFAR ResNet18 with a squeeze-excitation gate in every basic block.

As in the CIFAR reference implementation, the gate rescales the residual branch (after
its second BN) before the shortcut is added; the squeeze width is channels / 16.
"""

from dataclasses import dataclass

from torch import Tensor
from torchvision.models.resnet import BasicBlock
from torchvision.ops import SqueezeExcitation

from models.resnet import ResNet18, ResNetConfig, projection_shortcut


@dataclass(frozen=True)
class SENetConfig(ResNetConfig):
    arch: str = "senet18"
    se_reduction: int = 16  # squeeze channels = block channels / se_reduction (at least 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.se_reduction < 1:
            raise ValueError(f"se_reduction must be at least 1, got {self.se_reduction}")


class SEBasicBlock(BasicBlock):  # type: ignore[misc]  # torchvision ships no type information
    """torchvision's ``BasicBlock`` with a squeeze-excitation gate on the residual branch."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, se_reduction: int) -> None:
        shortcut = projection_shortcut(in_channels, out_channels, stride)
        super().__init__(in_channels, out_channels, stride=stride, downsample=shortcut)
        self.se = SqueezeExcitation(out_channels, max(1, out_channels // se_reduction))

    def forward(self, x: Tensor) -> Tensor:
        residual = self.se(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        out: Tensor = self.relu(residual + identity)
        return out


class SENet18(ResNet18):
    config_class = SENetConfig
    config: SENetConfig

    def __init__(self, config: SENetConfig | None = None) -> None:
        super().__init__(config or self.config_class())

    def make_block(self, in_channels: int, out_channels: int, stride: int) -> SEBasicBlock:
        return SEBasicBlock(in_channels, out_channels, stride, self.config.se_reduction)
