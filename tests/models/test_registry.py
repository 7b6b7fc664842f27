"""build_model by name, and checkpoints that rebuild a network from the dict alone."""

import json
from dataclasses import asdict

import pytest
import torch

from models import ARCHS, Net, build_model, load_checkpoint, save_checkpoint

ARCH_NAMES = sorted(ARCHS)


def trained_a_little(arch: str) -> Net:
    """A narrow net whose weights and BN running statistics differ from a fresh one."""
    torch.manual_seed(1)
    net = build_model(arch, 3, width=8)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    loss = torch.nn.functional.cross_entropy(net(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    return net.eval()


def test_unknown_arch_is_a_value_error_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="resnet50") as raised:
        build_model("resnet50", 10)
    assert all(arch in str(raised.value) for arch in ARCHS)


def test_load_checkpoint_rejects_an_unknown_arch() -> None:
    checkpoint = save_checkpoint(build_model("resnet18", 10, width=8))
    with pytest.raises(ValueError, match="vit"):
        load_checkpoint({**checkpoint, "arch": "vit"})


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_build_model_uses_the_requested_sizes(arch: str) -> None:
    net = build_model(arch, 7, width=8)
    assert isinstance(net, ARCHS[arch])
    assert (net.config.arch, net.config.num_classes, net.config.width) == (arch, 7, 8)
    assert net.classifier.out_features == 7


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_checkpoint_round_trip_gives_identical_outputs(arch: str) -> None:
    net = trained_a_little(arch)
    checkpoint = save_checkpoint(net, epoch=3)
    # The config must survive a JSON round trip (it is stored next to the weights).
    checkpoint["config"] = json.loads(json.dumps(checkpoint["config"]))
    restored = load_checkpoint(checkpoint)
    assert not restored.training
    assert restored.config == net.config
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(restored(images), net(images), rtol=0, atol=0)
        torch.testing.assert_close(restored.features(images), net.features(images), rtol=0, atol=0)


def test_checkpoint_holds_arch_config_extras_and_a_detached_copy_of_the_weights() -> None:
    net = trained_a_little("resnet18")
    checkpoint = save_checkpoint(net, epoch=5, accuracy=0.5)
    assert checkpoint["arch"] == "resnet18"
    assert checkpoint["config"] == asdict(net.config)
    assert (checkpoint["epoch"], checkpoint["accuracy"]) == (5, 0.5)
    saved_weight = checkpoint["state_dict"]["classifier.weight"]
    assert not saved_weight.requires_grad and saved_weight.device.type == "cpu"
    with torch.no_grad():
        net.classifier.weight.add_(1.0)
    assert not torch.equal(saved_weight, net.classifier.weight)
