"""Device choice and per-device speed settings: defaults, overrides, autocast, memory format."""

import warnings

import pytest
import torch
from torch import nn

from engine import device as dev

CPU = torch.device("cpu")


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


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, True),  # Zen 4, Cooper Lake
        ({"avx512f", "amx_tile", "amx_bf16"}, True),  # Sapphire Rapids
        ({"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bitalg"}, False),  # Ice Lake: emulated
        ({"avx2", "fma"}, False),
    ],
)
def test_native_bf16_needs_a_bf16_unit(flags: set[str], native: bool) -> None:
    assert dev.native_bf16(flags) is native


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


def test_pick_device_takes_a_name_else_cuda_when_present() -> None:
    assert dev.pick_device("cpu") == CPU
    assert dev.pick_device("cuda:1") == torch.device("cuda", 1)  # a name is taken as given
    assert dev.pick_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
