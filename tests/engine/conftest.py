"""Small real data for the engine tests: a class-balanced subset of the sample set at 32 px."""

import tempfile
from pathlib import Path

import pytest
import torch

from tests.engine.helpers import SAMPLES, write_small_zip


@pytest.fixture(scope="session")
def sample_set() -> tuple[torch.Tensor, torch.Tensor]:
    """80 real CIFAR-10 images (8 per class) as uint8 (N,3,32,32) and int64 labels."""
    from engine.dataset import load_working_set, open_dataset

    with tempfile.TemporaryDirectory() as tmp:
        index = open_dataset(SAMPLES / "cifar10-train.zip", Path(tmp))
        images, labels = load_working_set(index, 32)
    keep = torch.cat([torch.nonzero(torch.from_numpy(labels) == c)[:8, 0] for c in range(10)])
    return torch.from_numpy(images)[keep], torch.from_numpy(labels)[keep]


@pytest.fixture
def small_zip(tmp_path: Path) -> Path:
    """48 sample images: 16 from each of three classes."""
    return write_small_zip(tmp_path / "small.zip")
