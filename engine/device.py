"""Device choice and the per-device speed settings: autocast dtype, memory format, BatchNorm folding.

Measured with bench/throughput.py (bench/results/throughput-cpu.md): CIFAR ResNet18 at width 16,
K=8, batch 128, forward+backward to the input, on a 2-core AVX-512 CPU (1 torch thread, best of
5 interleaved rounds), in image-passes/s:

- contiguous fp32 382 -> channels_last 504 (1.3x): channels_last is used on every device; for
  training it is no slower (261 -> 345 images/s best round, equal medians).
- folding each eval-mode BatchNorm into the convolution before it (engine.batchnorm_folding): 504 -> 614
  (1.2x); folded, BatchNorm disappears from the crafting profile.
- bf16 autocast on this CPU (native AVX512-BF16): 614 -> 1092 for crafting (1.8x), 345 -> 602
  images/s for training (1.75x). It is the default on a CPU with native bf16 (AVX512-BF16 or AMX):
  the round-4 protection results (bench/results/efficacy-round4.md) were measured with it. A CPU
  without native bf16 (AVX2 only) emulates it: there, 15 surrogate epochs had not finished after
  17 minutes (about 134 s in fp32), so such a CPU stays in fp32 and asking for bf16 there warns.
  On CUDA: bf16 whenever the GPU supports it (tensor cores).
- torch.compile of the member loss (bf16, channels_last) paid 1.05-1.1x on the CPU after a
  74 s compilation in every process: not used.

The choices depend only on the hardware (never on a timing taken at run time), so every worker
with the same hardware computes the same perturbation. Override with ``SEPGUARD_AUTOCAST``
(``bf16`` | ``fp16`` | ``off``), ``SEPGUARD_CHANNELS_LAST`` (``1`` | ``0``) and
``SEPGUARD_FOLD_BN`` (``1`` | ``0``), or in code with ``override(...)``.
"""

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import torch


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when present, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class SpeedSettings:
    autocast: torch.dtype | None  # autocast dtype, None = plain fp32
    channels_last: bool
    fold_bn: bool  # fold eval-mode BatchNorm into the preceding convolution in ``freeze``

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names


def cpuinfo(field: str) -> str | None:
    """The first value of ``field`` in /proc/cpuinfo (Linux), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where the kernel lists none."""
    flags = cpuinfo("flags")
    return None if flags is None else set(flags.split())


def native_bf16(flags: set[str]) -> bool:
    """Whether CPU feature ``flags`` include a native bf16 unit (AVX512-BF16 or AMX)."""
    return bool(flags & NATIVE_BF16_FLAGS)


@cache
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32.

    oneDNN's own check (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) also says yes on AVX-512
    CPUs without a bf16 unit (an Ice Lake Xeon), where it emulates bf16: there crafting and training
    ran at half their fp32 rate (bench/results/throughput-icelake-emulated-bf16.md). So the CPU's
    flags decide where the kernel lists them; oneDNN's check only where it does not (not Linux).
    """
    flags = cpu_flags()
    if flags is not None:
        return native_bf16(flags)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@cache
def _cuda_bf16() -> bool:
    try:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    except (AssertionError, RuntimeError):
        return False


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None, "fp32": None}
_forced: dict[str, Any] = {}


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def default_settings(device: torch.device) -> SpeedSettings:
    """The measured-fastest settings for the device type (see the module docstring)."""
    if device.type == "cuda":
        return SpeedSettings(autocast=torch.bfloat16 if _cuda_bf16() else None, channels_last=True, fold_bn=True)
    if device.type == "cpu":
        return SpeedSettings(autocast=torch.bfloat16 if cpu_has_bf16() else None, channels_last=True, fold_bn=True)
    return SpeedSettings(autocast=None, channels_last=False, fold_bn=True)


def settings(device: torch.device) -> SpeedSettings:
    """Defaults for the device, then environment overrides, then ``override(...)`` in force."""
    s = default_settings(device)
    env_dtype = os.environ.get("SEPGUARD_AUTOCAST", "").strip().lower()
    if env_dtype:
        if env_dtype not in _DTYPES:
            raise ValueError(f"SEPGUARD_AUTOCAST must be one of {', '.join(_DTYPES)}, got {env_dtype!r}")
        s = replace(s, autocast=_DTYPES[env_dtype])
        if device.type == "cpu" and s.autocast == torch.bfloat16 and not cpu_has_bf16():
            _warn_emulated_bf16()
    for field, var in (("channels_last", "SEPGUARD_CHANNELS_LAST"), ("fold_bn", "SEPGUARD_FOLD_BN")):
        flag = _env_flag(var)
        if flag is not None:
            flags: dict[str, Any] = {field: flag}
            s = replace(s, **flags)
    return replace(s, **_forced) if _forced else s


@cache
def _warn_emulated_bf16() -> None:
    warnings.warn(
        "SEPGUARD_AUTOCAST=bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX): torch emulates "
        "it, which is several times SLOWER than fp32 (surrogate training measured more than 7x slower on an "
        "AVX2 CPU); unset SEPGUARD_AUTOCAST on this machine",
        RuntimeWarning,
        stacklevel=3,
    )


@contextlib.contextmanager
def override(**fields: object) -> Iterator[None]:
    """Force speed settings inside the block (benchmarks and tests): ``override(autocast=None,
    channels_last=False, fold_bn=False)``. Not thread-safe; process-wide."""
    unknown = set(fields) - {"autocast", "channels_last", "fold_bn"}
    if unknown:
        raise TypeError(f"unknown speed setting(s): {', '.join(sorted(unknown))}")
    saved = dict(_forced)
    _forced.update(fields)
    try:
        yield
    finally:
        _forced.clear()
        _forced.update(saved)


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """The device's autocast (bf16 on CUDA and on CPUs with native bf16), else plain fp32."""
    dtype = settings(device).autocast
    if dtype is None or device.type not in ("cuda", "cpu"):
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


def memory_format(device: torch.device) -> torch.memory_format:
    return settings(device).memory_format


def to_float(images_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float in [0, 1] on the device, in the device's memory format."""
    x = images_u8.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=memory_format(device))
