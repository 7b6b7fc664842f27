import torch

import models
from engine.device import override
from engine.features import class_means, target_classes


def test_target_class_is_half_the_classes_away() -> None:
    labels = torch.tensor([0, 1, 4, 5, 9])
    assert target_classes(labels, 10).tolist() == [5, 6, 9, 0, 4]
    assert target_classes(torch.tensor([0, 1, 2]), 3).tolist() == [1, 2, 0]


def test_class_means_equal_per_class_average_of_features(sample_set) -> None:
    images, labels = sample_set
    torch.manual_seed(0)
    nets = [models.build_model("resnet18", 10, width=8).eval() for _ in range(2)]
    with override(autocast=None):  # compared with the fp32 features below
        means = class_means(nets, images, labels, 10, torch.device("cpu"), batch=16)
    assert means.shape == (2, 10, nets[0].feature_dim)
    with torch.no_grad():
        feats = nets[1].features(images.float() / 255)
    for c in (0, 7):
        torch.testing.assert_close(means[1, c], feats[labels == c].mean(0), rtol=1e-4, atol=1e-5)


def test_class_means_of_nets_with_different_feature_widths_are_zero_padded(sample_set) -> None:
    images, labels = sample_set
    torch.manual_seed(0)
    nets = [models.build_model(arch, 10, width=8).eval() for arch in ("resnet18", "mobilenet")]
    narrow, wide = (n.feature_dim for n in nets)
    assert narrow < wide
    with override(autocast=None):
        means = class_means(nets, images, labels, 10, torch.device("cpu"), batch=16)
    assert means.shape == (2, 10, wide)
    with torch.no_grad():
        feats = nets[0].features(images.float() / 255)
    torch.testing.assert_close(means[0, 3, :narrow], feats[labels == 3].mean(0), rtol=1e-4, atol=1e-5)
    assert not means[0, :, narrow:].any()
