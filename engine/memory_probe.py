"""How much memory a crafting batch may take: the device's free memory, one member's cost per
image (measured on CUDA, estimated from the activations on the CPU), and the batch that fits."""

import torch
from torch import nn

from engine.device import autocast, memory_format


def free_memory(device: torch.device) -> int:
    """Bytes free for new tensors on ``device`` (CUDA: the driver's free memory plus the blocks
    torch has cached; CPU: the available system memory)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    import psutil

    return int(psutil.virtual_memory().available)


def member_bytes_per_image(net: nn.Module, device: torch.device, resolution: int, probe: int = 4) -> int:
    """Peak memory of one forward + backward-to-input pass per image, measured on ``device``
    (CUDA) or estimated from the activations' sizes (CPU, where no allocator statistics exist)."""
    x = torch.rand(probe, 3, resolution, resolution, device=device).contiguous(memory_format=memory_format(device))
    x.requires_grad_(True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with autocast(device):
            loss = net.features(x).float().pow(2).sum()  # type: ignore[operator]  # a models.Net
        torch.autograd.grad(loss, x)
        return max(1, (torch.cuda.max_memory_allocated(device) - base) // probe)
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() * out.element_size()))
        for m in net.modules()
        if not list(m.children()) and isinstance(m, nn.Module)
    ]
    try:
        with torch.no_grad(), autocast(device):
            net.features(x)  # type: ignore[operator]  # a models.Net
    finally:
        for h in hooks:
            h.remove()
    return max(1, 2 * sum(sizes) // probe)  # saved activations + their gradients


def fit_batch(requested: int, per_image_bytes: int, free_bytes: int, headroom: float = 0.6) -> int:
    """The crafting batch: ``requested`` halved until it fits ``headroom`` of the free memory.

    Halving keeps every batch boundary of ``requested`` (shards are whole multiples of it),
    so a smaller device still crafts the same image ranges with the same seeds.
    """
    batch = requested
    while batch > 1 and batch * per_image_bytes > headroom * free_bytes:
        batch //= 2
    return batch
