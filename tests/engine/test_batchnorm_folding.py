"""Frozen crafting members: BatchNorm folded into the convolutions, the function and the input gradient unchanged."""

import pytest
import torch
from torch import nn

import models
from engine import device as dev
from engine.batchnorm_folding import fold_batchnorm, freeze

CPU = torch.device("cpu")


def randomised_stats(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so folding is really exercised."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return net.eval()


@pytest.mark.parametrize("arch", sorted(models.ARCHS))
def test_fold_batchnorm_keeps_forward_and_features(arch: str) -> None:
    torch.manual_seed(0)
    net = randomised_stats(models.build_model(arch, 10, width=8))
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        logits, feats = net(x), net.features(x)
    folded = randomised_stats(models.build_model(arch, 10, width=8))
    folded.load_state_dict(net.state_dict())
    folded.eval()
    count = fold_batchnorm(folded)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(folded.features(x), feats, rtol=1e-4, atol=1e-4)
    if arch == "resnet18":
        assert count == 20  # stem + 16 block convs + 3 projection shortcuts
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_fold_batchnorm_needs_eval_mode() -> None:
    with pytest.raises(ValueError):
        fold_batchnorm(models.build_model("resnet18", 10, width=8).train())


def test_freeze_folds_in_place_and_keeps_the_input_gradient() -> None:
    torch.manual_seed(0)
    reference = randomised_stats(models.build_model("resnet18", 10, width=8))
    net = randomised_stats(models.build_model("resnet18", 10, width=8)).train()
    net.load_state_dict(reference.state_dict())
    x = torch.rand(3, 3, 32, 32)
    with dev.override(autocast=None, fold_bn=True):
        frozen = freeze(net, CPU)
        assert frozen is net
        assert freeze(net, CPU) is net  # freezing twice is harmless
    assert not frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())

    def input_grad(m: nn.Module) -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        return torch.autograd.grad(m.features(xi).pow(2).sum(), xi)[0]

    torch.testing.assert_close(input_grad(frozen), input_grad(reference), rtol=1e-3, atol=1e-5)


def test_freeze_without_folding_keeps_the_batchnorms() -> None:
    net = models.build_model("resnet18", 10, width=8)
    with dev.override(fold_bn=False):
        freeze(net, CPU)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
