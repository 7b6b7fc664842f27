import numpy as np
import pytest
import torch

from engine.evaluate import (
    EvalSettings,
    apply_defense,
    compare_at_resolutions,
    compare_victims,
    grayscale,
    jpeg,
    parse_defense,
    share,
    trust_warnings,
    wilson_interval,
)


def test_parse_defense_accepts_known_and_names_unknown() -> None:
    assert parse_defense("grayscale") == ("grayscale", None)
    assert parse_defense("jpeg:10") == ("jpeg", 10)
    for bad in ("jpeg", "jpeg:0", "jpeg:x", "blur"):
        with pytest.raises(ValueError, match="unknown defence"):
            parse_defense(bad)


def test_grayscale_defence_gives_equal_channels(sample_set) -> None:
    images, _ = sample_set
    g = grayscale(images[:4])
    assert g.shape == images[:4].shape and g.dtype == torch.uint8
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])


def test_jpeg_defence_removes_small_noise(sample_set) -> None:
    images, _ = sample_set
    noise = torch.randint(-8, 9, images[:8].shape, generator=torch.Generator().manual_seed(0))
    noisy = (images[:8].int() + noise).clamp(0, 255).to(torch.uint8)
    recompressed = jpeg(noisy, 10)
    assert recompressed.shape == noisy.shape
    # JPEG-10 throws away the high-frequency noise: the result is closer to JPEG of the clean image
    assert (recompressed.float() - jpeg(images[:8], 10).float()).abs().mean() < (
        noisy.float() - images[:8].float()
    ).abs().mean()


def test_defences_apply_to_train_and_only_grayscale_to_test(sample_set) -> None:
    images, labels = sample_set
    train, test = (images[:4], labels[:4]), (images[4:8], labels[4:8])
    (_, _), (t_img, _) = apply_defense(train, test, "jpeg:50")
    assert torch.equal(t_img, test[0])
    (g_img, _), (gt_img, _) = apply_defense(train, test, "grayscale")
    assert torch.equal(gt_img[:, 0], gt_img[:, 2]) and torch.equal(g_img[:, 0], g_img[:, 1])


def test_victims_learn_clean_data_and_fail_on_label_noise(sample_set) -> None:
    """A victim trained on clean data beats one trained with shuffled labels (real training)."""
    images, labels = sample_set
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    settings = EvalSettings(victims="convnet-60ep", epochs=8, batch_size=16)
    result = compare_victims(
        clean=(images, labels),
        protected=(images, shuffled),
        test=(images, labels),
        num_classes=10,
        settings=settings,
        device=torch.device("cpu"),
    )
    row = result["victims"][0]
    assert {"victim", "arch", "defense", "seed", "resolution", "clean_acc", "protected_acc", "clean_best_acc"} <= set(
        row
    )
    assert row["resolution"] == 32 and result["by_resolution"][0]["resolution"] == 32
    assert row["clean_best_acc"] >= row["clean_acc"]
    assert row["clean_acc"] > row["protected_acc"]
    assert result["mean_clean_acc"] == row["clean_acc"]
    assert np.isclose(result["mean_protected_acc"], row["protected_acc"])


def test_wilson_interval_contains_the_accuracy_and_narrows_with_more_images() -> None:
    lo, hi = wilson_interval(0.5, 15)
    assert lo < 0.5 < hi and hi - lo > 0.4
    lo2, hi2 = wilson_interval(0.5, 1000)
    assert lo2 < 0.5 < hi2 and hi2 - lo2 < 0.07
    assert wilson_interval(0.0, 50)[0] == 0.0 and wilson_interval(1.0, 50)[1] == 1.0


def test_warnings_for_a_small_holdout_and_victims_near_chance() -> None:
    small = {"test_images": 15, "mean_clean_acc": 0.8}
    assert any("only 15 clean test images" in w for w in trust_warnings(small, 10))
    weak = {"test_images": 500, "mean_clean_acc": 0.12}
    assert any("chance is 10%" in w for w in trust_warnings(weak, 10))
    assert trust_warnings({"test_images": 500, "mean_clean_acc": 0.6}, 10) == []


def test_resolutions_must_be_given_and_match_the_splits(sample_set) -> None:
    images, labels = sample_set
    split = (images[:8], labels[:8])
    with pytest.raises(ValueError, match="no victim resolution"):
        compare_at_resolutions(lambda r: (None, split, split), 10, EvalSettings(), torch.device("cpu"))
    with pytest.raises(ValueError, match="splits at 64 px hold 32 px images"):
        compare_at_resolutions(lambda r: (None, split, split), 10, EvalSettings(resolutions=(64,)), torch.device("cpu"))


def test_progress_of_a_stage_in_parts_follows_their_weights() -> None:
    seen: list[tuple[str, int, int]] = []
    weights = [32 * 32, 64 * 64]  # a victim at 64 px costs four of one at 32 px
    first, second = share(lambda *a: seen.append(a), weights, 0), share(lambda *a: seen.append(a), weights, 1)
    first("evaluate", 10, 10)
    second("evaluate", 5, 10)
    second("evaluate", 10, 10)
    assert seen == [("evaluate", 200, 1000), ("evaluate", 600, 1000), ("evaluate", 1000, 1000)]
