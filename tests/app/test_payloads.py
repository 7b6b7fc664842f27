"""The payload models read exactly what the engine writes, and the API's schema names them."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.core.security import authenticate
from app.db_models import Job
from app.payloads import DatasetSummary, Preview, ProtectionMeasurement
from app.schemas import JobCreate
from engine.config import MAX_EPS, ProtectConfig
from engine.dataset import DatasetIndex, open_dataset
from tests.app.helpers import bearer, dataset_zip


@pytest.fixture
def index(tmp_path: Path) -> DatasetIndex:
    """A real dataset index: two classes of three images."""
    archive = tmp_path / "dataset.zip"
    archive.write_bytes(dataset_zip())
    return open_dataset(archive, tmp_path / "job")


def test_dataset_summary_holds_every_field_of_the_engines_summary(index: DatasetIndex) -> None:
    written = index.summary()
    assert DatasetSummary.model_validate(written).model_dump(mode="json") == written


def test_preview_holds_every_field_the_engine_writes(index: DatasetIndex, tmp_path: Path) -> None:
    from engine.previews import write_previews

    delta = np.zeros((len(index.entries), 3, 8, 8), dtype=np.float32)
    written = write_previews(index, delta, tmp_path / "previews", eps=8.0)
    assert written
    assert [Preview.model_validate(p).model_dump(mode="json", by_alias=True) for p in written] == written


def test_measurement_holds_every_field_of_the_engines_evaluation() -> None:
    """A real (tiny) measurement with a defence: victims trained one epoch on random images."""
    import torch

    from engine.evaluate import EvalSettings, compare_victims

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(16) % 2
    settings = EvalSettings(victims="convnet-60ep", epochs=1, batch_size=8, defenses=["grayscale"])
    split = (images[:12], labels[:12])
    written: dict[str, Any] = compare_victims(
        split, split, (images[12:], labels[12:]), 2, settings, torch.device("cpu")
    )
    written["holdout_images"] = 4  # what stages.evaluate adds
    assert ProtectionMeasurement.model_validate(written).model_dump(mode="json") == written
    assert written["victims"][0]["resolution"] == 32 and written["by_resolution"][0]["resolution"] == 32


def test_a_measurement_without_resolutions_still_reads() -> None:
    """Jobs measured before victims recorded their resolution keep their measurement."""
    old = {
        "victims": [
            {
                "victim": "convnet-60ep",
                "arch": "convnet",
                "defense": "none",
                "seed": 0,
                "protected_acc": 0.3,
                "protected_best_acc": 0.4,
                "interval95": {"protected": [0.2, 0.4]},
            }
        ],
        "mean_protected_acc": 0.3,
        "spread_protected_acc": 0.0,
        "test_images": 100,
        "chance": 0.1,
        "settings": {"victims": ["convnet-60ep"], "seeds": [0], "epochs": [60]},
        "warnings": [],
    }
    measured = ProtectionMeasurement.model_validate(old)
    assert measured.victims[0].resolution is None and measured.by_resolution is None
    assert measured.settings.resolutions is None


def test_the_schema_names_every_payload(client: TestClient) -> None:
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    job = schemas["JobPublic"]["properties"]
    assert {"$ref": "#/components/schemas/DatasetSummary"} in job["dataset_summary"]["anyOf"]
    assert {"$ref": "#/components/schemas/ProtectionMeasurement"} in job["metrics"]["anyOf"]
    assert schemas["PreviewList"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Preview"}
    assert schemas["ValidationMessage"]["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert "class" in schemas["Preview"]["required"]
    victims = schemas["ProtectionMeasurement"]["properties"]["victims"]["items"]
    assert victims == {"$ref": "#/components/schemas/VictimResult"}


def test_a_payload_of_an_earlier_version_leaves_the_job_readable(
    client: TestClient, tokens: dict[str, str], index: DatasetIndex
) -> None:
    """A row written by an earlier version shows without the part it cannot read, instead of failing."""
    with session_scope() as session:
        owner = authenticate(session, tokens["alice"])
        job = Job(owner_id=owner.id, status="succeeded", params={}, progress=1.0)
        job.dataset_summary = index.summary()
        job.metrics = {"victims": [{"arch": "resnet18", "defence": "none"}], "mean_protected_acc": 0.2}
        session.add(job)
        session.flush()
        job_id = job.id
    body = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["alice"])).json()
    assert body["metrics"] is None
    assert body["dataset_summary"] == index.summary()
    listed = client.get("/api/v1/jobs", headers=bearer(tokens["alice"])).json()["items"]
    assert [j["id"] for j in listed] == [job_id]


def test_the_api_and_the_engine_share_the_perturbation_bound() -> None:
    assert JobCreate.model_json_schema()["properties"]["eps"]["maximum"] == MAX_EPS
    assert ProtectConfig(eps=MAX_EPS).eps == JobCreate(eps=MAX_EPS).eps
    with pytest.raises(ValueError, match="eps"):
        ProtectConfig(eps=MAX_EPS + 1)
    with pytest.raises(ValueError, match="eps"):
        JobCreate(eps=MAX_EPS + 1)
