"""Memory probing: the crafting batch that fits, and one member's memory per image."""

import torch

import models
from engine.batchnorm_folding import freeze
from engine.memory_probe import fit_batch, member_bytes_per_image

CPU = torch.device("cpu")


def test_fit_batch_halves_until_it_fits_and_keeps_batch_boundaries() -> None:
    assert fit_batch(256, per_image_bytes=1000, free_bytes=10**9) == 256
    assert fit_batch(256, per_image_bytes=1000, free_bytes=100_000) == 32  # 32 * 1000 <= 0.6 * 1e5
    assert 256 % fit_batch(256, per_image_bytes=7777, free_bytes=123_456) == 0
    assert fit_batch(256, per_image_bytes=10**9, free_bytes=10) == 1


def test_member_memory_estimate_grows_with_resolution_and_width() -> None:
    small = member_bytes_per_image(freeze(models.build_model("resnet18", 10, width=8), CPU), CPU, 32)
    wide = member_bytes_per_image(freeze(models.build_model("resnet18", 10, width=16), CPU), CPU, 32)
    big = member_bytes_per_image(freeze(models.build_model("resnet18", 10, width=8), CPU), CPU, 64)
    assert 0 < small < wide and 3 * small < big
