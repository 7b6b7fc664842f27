"""Per-device speed settings: overrides, autocast, memory format, frozen members with folded BatchNorm."""

import warnings

import pytest
import torch
from torch import nn

import models
from engine import device as dev

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
    count = dev.fold_batchnorm(folded)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(folded.features(x), feats, rtol=1e-4, atol=1e-4)
    if arch == "resnet18":
        assert count == 20  # stem + 16 block convs + 3 projection shortcuts
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_fold_batchnorm_needs_eval_mode() -> None:
    with pytest.raises(ValueError):
        dev.fold_batchnorm(models.build_model("resnet18", 10, width=8).train())


def test_freeze_folds_in_place_and_keeps_the_input_gradient() -> None:
    torch.manual_seed(0)
    reference = randomised_stats(models.build_model("resnet18", 10, width=8))
    net = randomised_stats(models.build_model("resnet18", 10, width=8)).train()
    net.load_state_dict(reference.state_dict())
    x = torch.rand(3, 3, 32, 32)
    with dev.override(autocast=None, fold_bn=True):
        frozen = dev.freeze(net, CPU)
        assert frozen is net
        assert dev.freeze(net, CPU) is net  # freezing twice is harmless
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
        dev.freeze(net, CPU)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_override_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with dev.override(autocast=None, channels_last=False, fold_bn=False):
        s = dev.settings(CPU)
        assert (s.autocast, s.channels_last, s.fold_bn) == (None, False, False)
        assert dev.memory_format(CPU) == torch.contiguous_format
        with dev.override(channels_last=True):
            assert dev.memory_format(CPU) == torch.channels_last
            assert dev.settings(CPU).autocast is None
        assert dev.memory_format(CPU) == torch.contiguous_format
    assert dev.settings(CPU) == dev.default_settings(CPU)
    with pytest.raises(TypeError), dev.override(bogus=True):
        pass
    monkeypatch.setenv("SEPGUARD_AUTOCAST", "off")
    monkeypatch.setenv("SEPGUARD_CHANNELS_LAST", "0")
    monkeypatch.setenv("SEPGUARD_FOLD_BN", "0")
    assert dev.settings(CPU) == dev.SpeedSettings(autocast=None, channels_last=False, fold_bn=False)
    monkeypatch.setenv("SEPGUARD_AUTOCAST", "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # this CPU may lack native bf16 (next test)
        assert dev.settings(CPU).autocast == torch.bfloat16
    monkeypatch.setenv("SEPGUARD_AUTOCAST", "fp8")
    with pytest.raises(ValueError):
        dev.settings(CPU)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: native)
    monkeypatch.setenv("SEPGUARD_AUTOCAST", "bf16")
    dev._warn_emulated_bf16.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert dev.settings(CPU).autocast == torch.bfloat16
    assert [("SLOWER" in str(w.message)) for w in caught] == ([] if native else [True])


@pytest.mark.parametrize("native", [True, False])
def test_cpu_default_precision_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: native)
    assert dev.default_settings(CPU).autocast == (torch.bfloat16 if native else None)


def test_defaults_follow_the_hardware() -> None:
    s = dev.default_settings(CPU)
    assert s.channels_last and s.fold_bn
    # bf16 where the CPU computes it natively, fp32 where it would be emulated
    assert s.autocast == (torch.bfloat16 if dev.cpu_has_bf16() else None)
    cuda = dev.default_settings(torch.device("cuda"))
    assert cuda.channels_last


def test_autocast_and_to_float() -> None:
    lin = nn.Linear(4, 2)
    x = torch.rand(3, 4)
    with dev.override(autocast=None), dev.autocast(CPU):
        assert lin(x).dtype == torch.float32
    with dev.override(autocast=torch.bfloat16), dev.autocast(CPU):
        assert lin(x).dtype == torch.bfloat16
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    with dev.override(channels_last=True):
        f = dev.to_float(images, CPU)
        assert f.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(f, images.float() / 255)
    with dev.override(channels_last=False):
        assert dev.to_float(images, CPU).is_contiguous()


def test_fit_batch_halves_until_it_fits_and_keeps_batch_boundaries() -> None:
    from engine.device import fit_batch

    assert fit_batch(256, per_image_bytes=1000, free_bytes=10**9) == 256
    assert fit_batch(256, per_image_bytes=1000, free_bytes=100_000) == 32  # 32 * 1000 <= 0.6 * 1e5
    assert 256 % fit_batch(256, per_image_bytes=7777, free_bytes=123_456) == 0
    assert fit_batch(256, per_image_bytes=10**9, free_bytes=10) == 1


def test_member_memory_estimate_grows_with_resolution_and_width() -> None:
    import models
    from engine.device import freeze, member_bytes_per_image

    cpu = torch.device("cpu")
    small = member_bytes_per_image(freeze(models.build_model("resnet18", 10, width=8), cpu), cpu, 32)
    wide = member_bytes_per_image(freeze(models.build_model("resnet18", 10, width=16), cpu), cpu, 32)
    big = member_bytes_per_image(freeze(models.build_model("resnet18", 10, width=8), cpu), cpu, 64)
    assert 0 < small < wide and 3 * small < big
