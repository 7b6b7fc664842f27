"""Crafting attacks: ε bound, seeded repeatability, shard equivalence, VR means, baselines."""

from __future__ import annotations

import copy

import pytest
import torch

import models
from engine.attacks import build_attack, craft, passes_per_image
from engine.attacks.class_pattern import class_patterns
from engine.attacks.sep_fa import SEPFA
from engine.attacks.sep_fa_vr import SEPFAVR
from engine.config import preset
from engine.device import override
from engine.features import class_means, target_classes

CPU = torch.device("cpu")
EPS = 8.0
TINY = dict(eps=EPS, steps=2, inner_steps=2, checkpoints=3, craft_batch=32, seed=3, augment=False)


@pytest.fixture(scope="module")
def ensemble(sample_set) -> tuple[list[torch.nn.Module], torch.Tensor]:
    """Three different width-8 ResNet18 'checkpoints' and their class means on the sample set."""
    images, labels = sample_set
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(models.build_model("resnet18", 10, width=8).eval())
    return nets, class_means(nets, images, labels, 10, CPU)


def run(method: str, ensemble, images, labels, start: int = 0, **over) -> torch.Tensor:
    nets, means = ensemble
    cfg = preset("fast", method=method, **{**TINY, **over})
    return craft(nets, means, images, labels, 10, cfg, CPU, start_index=start)


@pytest.mark.parametrize("method", ["sep-fa-vr", "sep-fa", "sep", "single-fa", "random"])
def test_every_method_stays_within_eps_and_repeats_with_the_seed(method, ensemble, sample_set) -> None:
    images, labels = sample_set[0][:32], sample_set[1][:32]
    first = run(method, ensemble, images, labels)
    assert first.shape == images.shape and first.dtype == torch.float16
    assert first.float().abs().max().item() <= EPS / 255 + 1e-3  # float16 rounding of ε
    assert first.float().abs().mean().item() > 0.3 * EPS / 255  # it actually moved
    if method != "random":  # the attacks project onto [0, 1]; packaging clamps the random baseline
        x = images.float() / 255 + first.float()
        assert x.min().item() >= -1e-3 and x.max().item() <= 1 + 1e-3
    assert torch.equal(first, run(method, ensemble, images, labels))


def test_augmented_crafting_repeats_and_differs_from_plain(ensemble, sample_set) -> None:
    images, labels = sample_set[0][:32], sample_set[1][:32]
    aug = run("sep-fa-vr", ensemble, images, labels, augment=True)
    assert torch.equal(aug, run("sep-fa-vr", ensemble, images, labels, augment=True))
    assert not torch.equal(aug, run("sep-fa-vr", ensemble, images, labels))
    assert aug.float().abs().max().item() <= EPS / 255 + 1e-3


def test_a_different_seed_gives_a_different_delta(ensemble, sample_set) -> None:
    images, labels = sample_set[0][:32], sample_set[1][:32]
    assert not torch.equal(run("random", ensemble, images, labels), run("random", ensemble, images, labels, seed=4))
    a = run("sep-fa-vr", ensemble, images, labels, augment=True)
    assert not torch.equal(a, run("sep-fa-vr", ensemble, images, labels, augment=True, seed=4))


@pytest.mark.parametrize("method", ["sep-fa-vr", "random"])
def test_shards_give_the_same_delta_as_one_pass(method, ensemble, sample_set) -> None:
    images, labels = sample_set[0][:64], sample_set[1][:64]
    whole = run(method, ensemble, images, labels, augment=True)
    parts = torch.cat(
        [
            run(method, ensemble, images[:32], labels[:32], start=0, augment=True),
            run(method, ensemble, images[32:], labels[32:], start=32, augment=True),
        ]
    )
    assert torch.equal(whole, parts)


class IndexSpy:
    """Stands in for the (K, C, D) means tensor and records which member's means are read."""

    def __init__(self, means: torch.Tensor) -> None:
        self.means = means
        self.read: list[int] = []

    def __getitem__(self, index: int | tuple) -> torch.Tensor:
        k = index[0] if isinstance(index, tuple) else index  # means[k] or means[k, :, :D_k]
        self.read.append(k if k >= 0 else len(self.means) + k)
        return self.means[index]


def test_vr_inner_steps_use_each_members_own_class_means(ensemble, sample_set) -> None:
    nets, means = ensemble
    images, labels = sample_set[0][:16], sample_set[1][:16]
    x = images.float() / 255
    targets = target_classes(labels, 10)
    attack = SEPFAVR(nets, means, eps=EPS, alpha=2, steps=2, device=CPU, inner_steps=6)
    spy = IndexSpy(attack.means)
    attack.means = spy
    gen = torch.Generator().manual_seed(11)
    attack(x, targets, gen)
    # the draws of the inner loop, replayed from the same seed
    replay = torch.Generator().manual_seed(11)
    drawn = [torch.randint(0, 3, (6,), generator=replay).tolist() for _ in range(2)]
    expected = [k for step in drawn for k in [0, 1, 2, *step]]
    assert spy.read == expected
    assert len(set(spy.read[3:9])) > 1  # the draws reach several members (not always the last)


def test_member_gradient_aligns_to_that_members_means(ensemble, sample_set) -> None:
    """g_j pulls f_j toward μ_j[t]; with means that differ per member, μ_K[t] gives another gradient."""
    nets, means = ensemble
    images, labels = sample_set[0][:8], sample_set[1][:8]
    x = images.float() / 255
    targets = target_classes(labels, 10)
    # make the members' means clearly different, so a mix-up changes the gradient
    means = means + torch.arange(3, dtype=means.dtype)[:, None, None]
    attack = SEPFAVR(nets, means, eps=EPS, alpha=2, steps=1, device=CPU, inner_steps=1)

    def grad_with(net: torch.nn.Module, mu: torch.Tensor) -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        loss = (net.features(xi) - mu[targets]).pow(2).sum()
        return torch.autograd.grad(loss, xi)[0]

    for j in range(2):
        own = grad_with(attack.nets[j], means[j])
        with override(autocast=None):  # compared with the fp32 gradient above
            got = attack.member_grad(j, x, targets)
        torch.testing.assert_close(got, own, rtol=1e-3, atol=1e-6)
        assert not torch.allclose(got, grad_with(attack.nets[j], means[-1]), rtol=1e-2, atol=1e-6)


def test_single_fa_uses_only_the_last_checkpoint(ensemble, sample_set) -> None:
    nets, means = ensemble
    cfg = preset("fast", method="single-fa", **TINY)
    attack = build_attack(nets, means, cfg, CPU)
    assert len(attack.nets) == 1 and attack.nets[0] is nets[-1]
    torch.testing.assert_close(attack.means, means[-1:])
    images, labels = sample_set[0][:32], sample_set[1][:32]
    single = run("single-fa", ensemble, images, labels)
    last_only = run("sep-fa", (nets[-1:], means[-1:]), images, labels)
    assert torch.equal(single, last_only)
    assert passes_per_image(cfg, 3) == cfg.steps


def test_vr_without_inner_steps_is_sep_fa(ensemble, sample_set) -> None:
    images, labels = sample_set[0][:32], sample_set[1][:32]
    assert torch.equal(
        run("sep-fa-vr", ensemble, images, labels, inner_steps=0), run("sep-fa", ensemble, images, labels)
    )
    assert passes_per_image(preset("fast", method="sep-fa-vr", inner_steps=0), 3) == passes_per_image(
        preset("fast", method="sep-fa"), 3
    )


def test_random_is_uniform_in_plus_minus_eps(ensemble) -> None:
    images = torch.zeros(256, 3, 32, 32, dtype=torch.uint8) + 128
    labels = torch.zeros(256, dtype=torch.long)
    delta = run("random", ensemble, images, labels).float() * 255
    assert delta.abs().max().item() <= EPS + 0.01
    assert delta.max().item() > EPS - 0.05 and delta.min().item() < -EPS + 0.05
    assert abs(delta.mean().item()) < 0.05
    # equal mass in each quarter of [−ε, ε]
    hist = torch.histc(delta, bins=4, min=-EPS, max=EPS) / delta.numel()
    assert torch.allclose(hist, torch.full((4,), 0.25), atol=0.01)
    assert passes_per_image(preset("fast", method="random"), 3) == 0


def test_step_size_schedule_decays_linearly(ensemble) -> None:
    nets, means = ensemble
    attack = SEPFAVR(nets, means, eps=EPS, alpha=4, steps=5, device=CPU, inner_steps=0, alpha_final=0.5)
    sizes = [attack.step_size(t) * 255 for t in range(5)]
    assert sizes[0] == pytest.approx(4) and sizes[-1] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(sizes, sizes[1:]))


@pytest.mark.parametrize("method", ["sep-fa", "sep-fa-vr"])
def test_progress_is_reported_within_a_batch_at_every_outer_step(ensemble, sample_set, method: str) -> None:
    """A cancel (raised from the progress callback) stops crafting after one step, not one batch."""
    nets, means = ensemble
    images, labels = sample_set[0][:16], sample_set[1][:16]
    cfg = preset("fast", method=method, **{**TINY, "steps": 3, "craft_batch": 16})
    calls: list[tuple[int, int]] = []
    craft(nets, means, images, labels, 10, cfg, CPU, progress=lambda s, d, t: calls.append((d, t)))
    assert len(calls) == 4 and calls[-1] == (16, 16)  # 3 steps inside the batch + the batch end
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[0][0] < 16


@pytest.mark.parametrize("method", ["sep-fa", "sep-fa-vr"])
def test_balance_makes_a_members_gradient_scale_irrelevant(ensemble, sample_set, method: str) -> None:
    """A checkpoint whose features are 16x larger (so its FA gradient is 256x larger) dominates the
    plain ensemble mean; with ``balance`` every member counts the same and δ does not change."""
    nets, _ = ensemble
    images, labels = sample_set[0][:16], sample_set[1][:16]
    loud = copy.deepcopy(nets[1])
    loud.features = lambda x, quiet=loud.features: 16 * quiet(x)  # powers of two: exact in float
    louder = [nets[0], loud, nets[2]]
    louder_ensemble = (louder, class_means(louder, images, labels, 10, CPU))
    plain_ensemble = (nets, class_means(nets, images, labels, 10, CPU))
    balanced = run(method, plain_ensemble, images, labels, balance=True)
    assert torch.equal(balanced, run(method, louder_ensemble, images, labels, balance=True))
    assert not torch.equal(run(method, plain_ensemble, images, labels), run(method, louder_ensemble, images, labels))
    assert balanced.float().abs().max().item() <= EPS / 255 + 1e-3


def test_gray_views_put_delta_into_luminance(ensemble) -> None:
    """Every pass on the gray view: the gradient reaches the three channels through the luma
    weights (all positive), so each step moves them together and δ is gray."""
    images = torch.full((16, 3, 32, 32), 128, dtype=torch.uint8)
    images += torch.randint(0, 40, images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    labels = torch.arange(16) % 10
    gray = run("sep-fa", ensemble, images, labels, gray=1.0).float()
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    colour = run("sep-fa", ensemble, images, labels).float()
    assert not torch.equal(colour[:, 0], colour[:, 1])


def test_half_resolution_views_make_delta_constant_over_2x2_blocks(ensemble) -> None:
    """Every pass on the half-resolution view: the gradient reaches the four pixels of a 2x2 block
    through their average, so each step moves them together and δ has no detail finer than 2 px."""
    images = torch.full((16, 3, 32, 32), 128, dtype=torch.uint8)
    images += torch.randint(0, 40, images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    labels = torch.arange(16) % 10
    low = run("sep-fa", ensemble, images, labels, lowres=1.0).float()
    blocks = low.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)  # (N, 3, 16, 16, 4)
    assert torch.equal(blocks, blocks[..., :1].expand_as(blocks)) and low.abs().max() > 0
    full = run("sep-fa", ensemble, images, labels).float().unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)
    assert not torch.equal(full, full[..., :1].expand_as(full))


def test_cross_entropy_term_pulls_the_prediction_towards_the_target(ensemble, sample_set) -> None:
    images, labels = sample_set[0][:32], sample_set[1][:32]
    nets, _ = ensemble
    targets = target_classes(labels, 10)

    def target_loss(delta: torch.Tensor) -> float:
        x = images.float() / 255 + delta.float()
        with torch.no_grad():
            return sum(torch.nn.functional.cross_entropy(n(x), targets).item() for n in nets)

    fa = run("sep-fa", ensemble, images, labels, steps=4)
    both = run("sep-fa", ensemble, images, labels, steps=4, ce_weight=1.0)
    assert not torch.equal(fa, both)
    assert target_loss(both) < target_loss(fa)
    assert both.float().abs().max().item() <= EPS / 255 + 1e-3


@pytest.mark.parametrize("method", ["sep-fa-vr", "random"])
def test_class_pattern_is_shared_by_a_class_and_stays_within_eps(method, ensemble, sample_set) -> None:
    images, labels = sample_set[0][:40], sample_set[1][:40]
    delta = run(method, ensemble, images, labels, class_pattern=4.0).float()
    assert delta.abs().max().item() <= EPS / 255 + 1e-3
    pattern = class_patterns(10, 32, 4.0, TINY["seed"])
    # every image carries its own class's pattern: the crafted rest is within ε − A around it
    x0 = images.float() / 255
    base = (x0 + pattern[labels]).clamp(0, 1)
    assert ((x0 + delta) - base).abs().max().item() <= (EPS - 4) / 255 + 1e-3
    # the crafted rest does not follow the pattern, so along the pattern δ keeps about A
    along = (delta * pattern[labels].sign()).mean().item() * 255
    assert 3 < along < 5


def test_class_patterns_are_colour_tiles_repeated_one_per_class() -> None:
    p = class_patterns(10, 32, 4.0, seed=0)
    assert p.shape == (10, 3, 32, 32) and torch.allclose(p.abs(), torch.full_like(p, 4 / 255))
    # a 4-pixel tile at R = 32, the same wherever it is cut from the image
    assert torch.equal(p[..., 4:8, 12:16], p[..., :4, :4])
    assert torch.equal(p[..., 5:29, 2:26], p[..., 1:25, 2:26])  # shifted by a whole tile: unchanged
    assert not torch.equal(p[:, 0], p[:, 1])  # colour: the channels differ
    assert len({tuple(q[..., :4, :4].flatten().sign().tolist()) for q in p}) == 10
    assert torch.equal(p, class_patterns(10, 32, 4.0, seed=0)) and not torch.equal(
        p, class_patterns(10, 32, 4.0, seed=1)
    )
    assert class_patterns(3, 30, 2.0, seed=0, tile=8).shape == (3, 3, 30, 30)  # R not a multiple of the tile


class FormatSpy(SEPFA):
    """SEP-FA that records the memory format of every input its members see."""

    seen: list[bool]

    def member_loss(self, k: int, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return super().member_loss(k, x, targets)


@pytest.mark.parametrize("channels_last", [True, False])
def test_crafting_memory_format_comes_from_the_speed_settings(
    ensemble, sample_set, monkeypatch: pytest.MonkeyPatch, channels_last: bool
) -> None:
    """SEPGUARD_CHANNELS_LAST decides the members' and their inputs' layout (nothing overrides it)."""
    nets, means = ensemble
    monkeypatch.setenv("SEPGUARD_CHANNELS_LAST", "1" if channels_last else "0")
    attack = FormatSpy(copy.deepcopy(nets), means, eps=EPS, alpha=2, steps=1, device=CPU)
    attack.seen = []
    conv = next(m for m in attack.nets[0].modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    images, labels = sample_set[0][:4], sample_set[1][:4]
    attack(images.float() / 255, target_classes(labels, 10), torch.Generator().manual_seed(0))
    assert attack.seen == [channels_last] * len(nets)
