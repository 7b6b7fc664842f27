"""Batched augmentation: random crop after padding plus flip, the luma and half-resolution views."""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.augment import LUMA, crop_flip, half_resolution, luma


def views_of(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every crop of the zero-padded image, flipped or not: what crop_flip may return for it."""
    padded = F.pad(image, (pad, pad, pad, pad))
    h, w = image.shape[-2:]
    crops = [padded[:, y : y + h, x : x + w] for y in range(2 * pad + 1) for x in range(2 * pad + 1)]
    return crops + [c.flip(-1) for c in crops]


def test_every_image_gets_one_padded_crop_possibly_flipped() -> None:
    x = torch.rand(24, 3, 8, 8)
    out = crop_flip(x, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for image, view in zip(x, out):
        assert any(torch.equal(view, candidate) for candidate in views_of(image, 2))
    # the draws differ per image: not one crop for the whole batch
    assert len({next(i for i, c in enumerate(views_of(img, 2)) if torch.equal(v, c)) for img, v in zip(x, out)}) > 3


def test_without_padding_only_flips_remain() -> None:
    x = torch.rand(64, 3, 5, 5)
    out = crop_flip(x, pad=0, generator=torch.Generator().manual_seed(1))
    flipped = [not torch.equal(o, i) for o, i in zip(out, x)]
    assert all(torch.equal(o, i.flip(-1)) for o, i, f in zip(out, x, flipped) if f)
    assert 10 < sum(flipped) < 54  # about half


def test_the_same_seed_gives_the_same_views() -> None:
    x = torch.rand(16, 3, 8, 8)
    first = crop_flip(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, crop_flip(x, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(first, crop_flip(x, generator=torch.Generator().manual_seed(6)))


def test_crop_flip_passes_gradients_back_to_the_input() -> None:
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    crop_flip(x, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad is not None and x.grad.max() == 1  # each input pixel is used at most once


def test_luma_is_what_a_grayscale_conversion_computes() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    gray = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.float32)  # the grayscale defence
    ours = luma(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy() * 255
    assert np.abs(ours - gray).max() <= 0.51  # PIL rounds to whole levels


def test_luma_of_a_pure_colour_and_of_a_gray() -> None:
    x = torch.zeros(2, 3, 4, 4)
    x[0, 0] = 1.0  # pure red
    x[1] = 0.25  # gray: luma is the gray level itself
    y = luma(x)
    assert y.shape == (2, 1, 4, 4)
    torch.testing.assert_close(y[0], torch.full((1, 4, 4), LUMA[0]))
    torch.testing.assert_close(y[1], torch.full((1, 4, 4), 0.25))


def test_luma_is_differentiable() -> None:
    x = torch.rand(1, 3, 2, 2, requires_grad=True)
    luma(x).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad[0, :, 0, 0], torch.tensor(LUMA))


def test_half_resolution_removes_the_finest_detail_and_keeps_flat_areas() -> None:
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2  # period 2: the finest detail
    x = torch.stack([checker.float(), torch.full((8, 8), 0.25), checker.float() * 0 + 0.75])[None]
    y = half_resolution(x)
    assert y.shape == x.shape
    assert torch.allclose(y[0, 0], torch.full((8, 8), 0.5)) and torch.allclose(y[0, 1:], x[0, 1:])
    odd = torch.rand(2, 3, 7, 9, requires_grad=True)  # sizes that are not even keep their shape
    half_resolution(odd).sum().backward()
    assert odd.grad is not None and odd.grad.shape == odd.shape
