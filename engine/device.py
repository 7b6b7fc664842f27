"""Device choice and the per-device speed settings (bf16 autocast + channels_last on CUDA)."""

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when present, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA (tensor cores); plain fp32 on the CPU, where bf16 is slower."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def freeze(net: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode, parameters frozen, on the device: gradients then flow only to the input."""
    net = net.to(device=device, memory_format=memory_format(device)).eval()
    net.requires_grad_(False)
    return net


def to_float(images_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float in [0, 1] on the device, in the device's memory format."""
    x = images_u8.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=memory_format(device))
