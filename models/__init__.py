"""The network zoo: the five CIFAR-style architectures of the SEP paper and a MobileNetV2, a registry
to build them by name, and checkpoints that rebuild a network from a plain dict.

Checkpoints are dicts of plain data (arch name, config fields, CPU tensors) rather than
pickled modules, so they load without this package's classes being importable under the
same names and can be stored by any stage of the job pipeline.
"""

from dataclasses import asdict
from typing import Any

import torch

from models.base import CIFAR10_MEAN, CIFAR10_STD, Net, NetConfig
from models.densenet import DenseNet121, DenseNetConfig
from models.googlenet import GoogLeNet, GoogLeNetConfig
from models.mobilenet import MobileNetConfig, MobileNetV2
from models.resnet import ResNet18, ResNetConfig
from models.senet import SENet18, SENetConfig
from models.vgg import VGG16, VGGConfig

ARCHS: dict[str, type[Net]] = {
    net_class.config_class.arch: net_class
    for net_class in (ResNet18, SENet18, VGG16, DenseNet121, GoogLeNet, MobileNetV2)
}

__all__ = [
    "ARCHS",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "VGG16",
    "DenseNet121",
    "DenseNetConfig",
    "GoogLeNet",
    "GoogLeNetConfig",
    "MobileNetConfig",
    "MobileNetV2",
    "Net",
    "NetConfig",
    "ResNet18",
    "ResNetConfig",
    "SENet18",
    "SENetConfig",
    "VGGConfig",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]


def _net_class(arch: str) -> type[Net]:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[arch]


def build_model(arch: str, num_classes: int, width: int | None = None) -> Net:
    """A freshly initialised ``arch`` network; ``width=None`` means the paper's full width."""
    net_class = _net_class(arch)
    if width is None:
        return net_class(net_class.config_class(num_classes=num_classes))
    return net_class(net_class.config_class(num_classes=num_classes, width=width))


def save_checkpoint(net: Net, **extra: Any) -> dict[str, Any]:
    """Everything needed to rebuild ``net``: arch, config fields and a CPU copy of its weights.

    ``extra`` (epoch, accuracy, ...) is stored alongside at the top level.
    """
    state_dict = {name: tensor.detach().cpu().clone() for name, tensor in net.state_dict().items()}
    return {"arch": net.config.arch, "config": asdict(net.config), "state_dict": state_dict, **extra}


def load_checkpoint(checkpoint: dict[str, Any], device: str | torch.device = "cpu") -> Net:
    """The network saved by ``save_checkpoint``, on ``device`` and in eval mode."""
    net_class = _net_class(checkpoint["arch"])
    net = net_class(net_class.config_class(**checkpoint["config"]))
    net.load_state_dict(checkpoint["state_dict"])
    return net.to(device).eval()
