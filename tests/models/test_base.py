"""The shared base: config validation, width scaling and in-net normalisation."""

import pytest
import torch

from models import CIFAR10_MEAN, CIFAR10_STD, ResNet18, ResNetConfig, SENetConfig, build_model
from models.base import FULL_WIDTH


@pytest.mark.parametrize("field, value", [("num_classes", 0), ("width", 0)])
def test_config_rejects_non_positive_sizes(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        ResNetConfig(**{field: value})


def test_net_rejects_a_config_of_another_arch() -> None:
    with pytest.raises(ValueError, match="senet18"):
        ResNet18(SENetConfig(width=8))


@pytest.mark.parametrize("width", [8, 16, FULL_WIDTH])
def test_scaled_is_proportional_to_width(width: int) -> None:
    assert ResNetConfig(width=width).scaled(512) == 512 * width // FULL_WIDTH


def test_scaled_never_reaches_zero_channels() -> None:
    assert ResNetConfig(width=1).scaled(16) == 1


def test_normalize_maps_the_cifar_mean_pixel_to_zero_and_one_std_to_one() -> None:
    net = build_model("resnet18", 10, width=8)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(net.normalize(mean), torch.zeros(1, 3, 4, 4))
    torch.testing.assert_close(net.normalize(mean + std), torch.ones(1, 3, 4, 4))


def test_normalisation_constants_stay_out_of_the_state_dict_but_follow_dtype_moves() -> None:
    net = build_model("resnet18", 10, width=8)
    assert not any("pixel" in name for name in net.state_dict())
    assert net.to(torch.float64).pixel_std.dtype == torch.float64


def test_projection_shortcut_is_a_strided_1x1_conv() -> None:
    from models.resnet import projection_shortcut

    shortcut = projection_shortcut(8, 16, stride=2).eval()
    conv = torch.nn.Conv2d(8, 16, kernel_size=1, stride=2, bias=False)
    conv.weight.data.copy_(shortcut[1].weight.data)
    x = torch.rand(3, 8, 9, 9)
    torch.testing.assert_close(shortcut[1](shortcut[0](x)), conv(x))
    assert projection_shortcut(16, 16, stride=1) is None
