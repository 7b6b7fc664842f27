"""The working resolution policy: median short side, multiple of 16, clamped to [32, cap]; the user's R wins."""

import pytest

from engine.config import ProtectConfig, preset
from engine.resolution import ResolutionChoice, choose_resolution, resolve_resolution, victim_resolutions

CIFAR = [(32, 32)] * 10


def test_cifar_size_images_are_crafted_at_32() -> None:
    assert choose_resolution(CIFAR, cap=32) == ResolutionChoice(32, "median short side 32 px (CIFAR-size images)")
    assert choose_resolution(CIFAR, cap=224).resolution == 32


def test_100_px_photos_round_down_to_96_or_stop_at_the_cap() -> None:
    sizes = [(100, 100)] * 5
    assert choose_resolution(sizes, cap=224) == ResolutionChoice(
        96, "median short side 100 px, rounded down to a multiple of 16"
    )
    assert choose_resolution(sizes, cap=32) == ResolutionChoice(
        32, "median short side 100 px, capped at 32 px by the preset"
    )


@pytest.mark.parametrize("size", [(400, 600), (600, 400)])
def test_portrait_and_landscape_use_the_short_side(size: tuple[int, int]) -> None:
    assert choose_resolution([size] * 3, cap=1024) == ResolutionChoice(400, "median short side 400 px")
    assert choose_resolution([size] * 3, cap=224).resolution == 224


def test_a_few_huge_outliers_do_not_move_the_median() -> None:
    sizes = [(64, 48)] * 7 + [(3024, 4032)] * 3
    assert choose_resolution(sizes, cap=224).resolution == 48


def test_mixed_sizes_take_the_median_short_side() -> None:
    sizes = [(32, 32), (50, 80), (120, 90), (300, 200), (4032, 3024)]
    choice = choose_resolution(sizes, cap=224)
    assert choice.resolution == 80 and choice.reason.startswith("median short side 90 px")
    # an even count: the mean of the two middle short sides, rounded down to a multiple of 16
    assert choose_resolution([(40, 40), (70, 70)], cap=224) == ResolutionChoice(
        48, "median short side 55 px, rounded down to a multiple of 16"
    )
    assert choose_resolution([(40, 40), (71, 71)], cap=224).reason.startswith("median short side 55.5 px")


@pytest.mark.parametrize(("short", "expected"), [(47, 32), (48, 48), (63, 48), (64, 64), (223, 208), (225, 224)])
def test_rounding_is_down_to_a_multiple_of_16(short: int, expected: int) -> None:
    assert choose_resolution([(short, short + 10)], cap=224).resolution == expected


def test_images_under_32_px_are_worked_on_at_32() -> None:
    choice = choose_resolution([(8, 8), (20, 28), (16, 500)], cap=224)
    assert choice == ResolutionChoice(32, "median short side 16 px, raised to the 32 px minimum")


def test_nothing_to_choose_from_or_a_cap_under_32_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        choose_resolution([], cap=32)
    with pytest.raises(ValueError, match="at least 32"):
        choose_resolution(CIFAR, cap=16)


def test_presets_leave_r_to_the_data_under_their_caps() -> None:
    assert [(preset(n).resolution, preset(n).resolution_cap) for n in ("fast", "balanced", "paper")] == [
        (0, 32),
        (0, 32),
        (0, 224),
    ]
    photos = [(640, 480)] * 4
    assert resolve_resolution(preset("balanced"), photos).resolution == 32  # unchanged until photos are measured
    assert resolve_resolution(preset("fast"), photos).resolution == 32
    assert resolve_resolution(preset("paper"), photos).resolution == 224
    assert resolve_resolution(preset("paper"), CIFAR).resolution == 32


def test_auto_is_settled_once_with_its_reason() -> None:
    settled = resolve_resolution(preset("paper"), [(100, 150)] * 3)
    assert (settled.resolution, settled.resolution_reason) == (
        96,
        "median short side 100 px, rounded down to a multiple of 16",
    )
    assert resolve_resolution(settled, [(4000, 3000)]) == settled  # settled: other sizes change nothing
    assert ProtectConfig.from_dict(settled.to_dict()) == settled  # a job's stored parameters keep it


def test_an_explicit_resolution_wins_over_the_data_and_the_cap() -> None:
    cfg = resolve_resolution(preset("balanced", resolution=64), [(400, 600)] * 3)
    assert (cfg.resolution, cfg.resolution_reason) == (64, "set by the user")
    assert resolve_resolution(preset("fast", resolution=16), CIFAR).resolution == 16


@pytest.mark.parametrize("bad", [{"resolution": -1}, {"resolution": 8}, {"resolution": 15}, {"resolution_cap": 16}])
def test_invalid_resolutions_are_refused_in_words(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="resolution"):
        ProtectConfig(**bad)
    assert ProtectConfig(resolution=0).resolution == 0 and ProtectConfig(resolution=16).resolution == 16


def test_cifar_size_victims_train_at_r_alone() -> None:
    assert victim_resolutions(32, CIFAR) == [32]
    assert victim_resolutions(32, [(63, 200)] * 3) == [32]  # 2R would be an upscale for most images


def test_photo_victims_also_train_at_twice_r() -> None:
    assert victim_resolutions(32, [(400, 600)] * 5) == [32, 64]
    assert victim_resolutions(224, [(400, 600)] * 5) == [224]
