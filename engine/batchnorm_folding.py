"""Crafting members frozen for gradients to the input, with every eval-mode BatchNorm folded into
the convolution before it.

Folding removes BatchNorm from the crafting profile (504 -> 614 image-passes/s on a 2-core CPU,
see engine.device): a folded net computes the same function up to float rounding.
"""

from typing import Any, cast

import torch
from torch import nn

from engine.device import settings


def freeze(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` in eval mode with frozen parameters, on the device, for gradients to the input
    only; its eval-mode BatchNorms are folded into their convolutions where the settings say so.
    Modifies and returns ``net`` itself (the crafting members are used for nothing else; a
    folded net computes the same function but can no longer be trained or checkpointed)."""
    s = settings(device)
    net.eval()
    net.requires_grad_(False)
    if s.fold_bn:
        fold_batchnorm(net)
    # torch's overloads of Module.to leave out memory_format, which it accepts; it returns the module itself.
    net.to(device=device, memory_format=s.memory_format)  # type: ignore[call-overload]
    return net


def fold_batchnorm(net: nn.Module) -> int:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` into it, in place;
    the BatchNorm becomes ``Identity``. Returns the number of pairs folded.

    Pairs are found by tracing ``net`` with torch.fx: a pair is folded only when the conv's
    output goes to the BatchNorm alone and both modules are called once, so the computation is
    unchanged (up to float rounding) for ``forward`` and for any method built from the same
    submodules (e.g. ``features``). Nets that cannot be traced are left as they are. The pairs of
    a zoo net depend only on its class and config, so they are traced once per config.
    """
    if net.training:
        raise ValueError("fold_batchnorm needs an eval-mode net")
    config = getattr(net, "config", None)
    key = (type(net), config) if config is not None else None
    try:
        pairs = _FOLD_PLANS[key] if key in _FOLD_PLANS else _fold_plan(net)
    except TypeError:  # unhashable config
        key, pairs = None, _fold_plan(net)
    if key is not None:
        _FOLD_PLANS[key] = pairs
    modules = dict(net.named_modules())
    folded = 0
    for conv_name, bn_name in pairs:
        conv, bn = modules.get(conv_name), modules.get(bn_name)
        if type(conv) is not nn.Conv2d or type(bn) is not nn.BatchNorm2d:
            continue  # folded already
        with torch.no_grad():
            scale = torch.rsqrt(cast(torch.Tensor, bn.running_var).float() + bn.eps)
            if bn.affine:
                scale = scale * bn.weight.float()
            shift = -cast(torch.Tensor, bn.running_mean).float() * scale
            if bn.affine:
                shift = shift + bn.bias.float()
            if conv.bias is not None:
                shift = shift + conv.bias.float() * scale
            conv.weight.copy_((conv.weight.float() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
            conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)
        parent_name, _, child = bn_name.rpartition(".")
        setattr(modules[parent_name] if parent_name else net, child, nn.Identity())
        folded += 1
    return folded


_FOLD_PLANS: dict[object, tuple[tuple[str, str], ...]] = {}


def _fold_plan(net: nn.Module) -> tuple[tuple[str, str], ...]:
    """(conv name, BatchNorm name) pairs of ``net`` that can be folded (see ``fold_batchnorm``)."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(net).graph
    except Exception:
        return ()
    modules = dict(net.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs: list[tuple[Any, Any]] = []
    for node in graph.nodes:
        if node.op != "call_module" or type(modules.get(node.target)) is not nn.BatchNorm2d:
            continue
        src = node.args[0] if node.args else None
        bn = modules[node.target]
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and type(modules.get(src.target)) is nn.Conv2d
            and len(src.users) == 1
            and calls[cast(str, src.target)] == 1
            and calls[node.target] == 1
            and bn.track_running_stats
            and bn.running_mean is not None
        ):
            pairs.append((src.target, node.target))
    return tuple(pairs)
