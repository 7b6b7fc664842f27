"""Every architecture keeps the zoo's contract: shapes, features/logits consistency,
input gradients, any input size >= 16, channels_last and bf16 autocast."""

import pytest
import torch

from models import ARCHS, Net, build_model

ARCH_NAMES = sorted(ARCHS)
# Penultimate width of each architecture at the paper's full width (CIFAR reference nets;
# MobileNetV2's 1280-channel head at width multiplier 1).
FULL_FEATURE_DIM = {
    "resnet18": 512, "senet18": 512, "vgg16": 512, "densenet121": 1024, "googlenet": 1024, "mobilenet": 1280,
}  # fmt: skip


def narrow(arch: str, num_classes: int = 10) -> Net:
    torch.manual_seed(0)
    return build_model(arch, num_classes, width=8).eval()


def test_registry_lists_the_five_paper_architectures_and_a_mobilenet() -> None:
    assert set(ARCHS) == set(FULL_FEATURE_DIM)


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_default_width_is_the_paper_width(arch: str) -> None:
    net = build_model(arch, 10)
    assert net.config.width == 64
    assert net.feature_dim == FULL_FEATURE_DIM[arch]
    assert net.classifier.in_features == net.feature_dim


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_width_scales_the_feature_dim(arch: str) -> None:
    assert build_model(arch, 10, width=16).feature_dim == FULL_FEATURE_DIM[arch] // 4


@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("num_classes", [10, 3])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_forward_and_features_shapes(arch: str, num_classes: int, size: int) -> None:
    net = narrow(arch, num_classes)
    images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert net(images).shape == (2, num_classes)
        assert net.features(images).shape == (2, net.feature_dim)
    assert net.config.arch == arch and net.config.num_classes == num_classes


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_forward_is_the_classifier_of_the_features(arch: str) -> None:
    net = narrow(arch)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(images), net.classifier(net.features(images)))


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_gradient_flows_to_every_input_pixel_batch(arch: str) -> None:
    net = narrow(arch)
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    net.features(images).pow(2).sum().backward()
    assert images.grad is not None
    assert torch.isfinite(images.grad).all()
    assert (images.grad.flatten(1).abs().sum(dim=1) > 0).all()


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_channels_last_gives_the_same_logits(arch: str) -> None:
    net = narrow(arch)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = net(images)
        net = net.to(memory_format=torch.channels_last)
        actual = net(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_bf16_autocast_runs_forward_and_backward(arch: str) -> None:
    net = narrow(arch)
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(images)
    assert logits.dtype == torch.bfloat16
    logits.float().sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_channels_last_training_on_an_odd_batch(arch: str) -> None:
    """The last batch of a dataset is often odd; at width 8 in channels_last a 1x1 stride-2 conv's
    backward corrupted the heap on AVX-512 CPUs (the process crashed)."""
    net = narrow(arch).train().to(memory_format=torch.channels_last)
    for _ in range(3):
        images = torch.rand(25, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        torch.nn.functional.cross_entropy(net(images), torch.arange(25) % 10).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
