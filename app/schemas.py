"""Request and response bodies of the REST API."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from app.db_models import JobStatus, StageStatus
from app.payloads import DatasetSummary, Preview, ProtectionMeasurement, Stored
from engine.config import MAX_EPS, METHODS, PRESETS, ProtectConfig, preset

Unset = SkipJsonSchema[None]  # an optional form field: absent means "the preset's value"


# Bounds: a little over what the largest preset (paper: 120 epochs, K 15, T 30, M 16, R up to 224)
# needs, so that one owner cannot monopolise (or run out of memory) every worker.
MAX_EPOCHS, MAX_STEPS, MAX_INNER_STEPS, MAX_CHECKPOINTS, MAX_RESOLUTION = 200, 100, 32, 32, 256
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
Passes = Annotated[int, Field(ge=1, le=MAX_STEPS)]
InnerSteps = Annotated[int, Field(ge=0, le=MAX_INNER_STEPS)]
Checkpoints = Annotated[int, Field(ge=1, le=MAX_CHECKPOINTS)]
Resolution = Annotated[int, Field(ge=16, le=MAX_RESOLUTION)]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
Quality = Annotated[int, Field(ge=1, le=100)]


class JobCreate(BaseModel):
    """Form fields of ``POST /jobs``: a preset, any override of it, and what to do besides protecting."""

    preset: Literal[PRESETS] = Field("balanced", description="Speed/strength preset.")  # type: ignore[valid-type]
    method: Literal[METHODS] | Unset = Field(None, description="Perturbation method (default: the preset's).")  # type: ignore[valid-type]
    eps: float = Field(8.0, gt=0, le=MAX_EPS, description="Perturbation budget in 1/255 units.")
    steps: Passes | Unset = Field(None, description="Outer crafting steps T.")
    checkpoints: Checkpoints | Unset = Field(None, description="Surrogate checkpoints K in the ensemble.")
    inner_steps: InnerSteps | Unset = Field(None, description="Variance-reduced inner steps M.")
    epochs: Epochs | Unset = Field(None, description="Surrogate training epochs.")
    resolution: Resolution | Unset = Field(
        None,
        description="Working resolution R in pixels; absent: chosen from the images' sizes, up to the preset's cap.",
    )
    seed: Seed | Unset = Field(None, description="Random seed.")
    output_format: Literal["png", "keep"] | Unset = Field(None, description="png (lossless) or keep the format.")
    jpeg_quality: Quality | Unset = Field(None, description="JPEG quality when keeping JPEG files.")
    measure: bool = Field(False, description="Also measure the protection by training victim models.")
    skip_invalid: bool = Field(False, description="Skip unreadable files (listed in the summary) instead of failing.")

    def config(self, shard_size: int | None = None) -> ProtectConfig:
        """The protection settings: the preset with every given field overriding it (raises ValueError)."""
        fields = ("method", "eps", "steps", "checkpoints", "inner_steps", "epochs", "resolution", "seed")
        overrides: dict[str, Any] = {name: getattr(self, name) for name in fields}
        overrides |= {"output_format": self.output_format, "jpeg_quality": self.jpeg_quality, "shard_size": shard_size}
        return preset(self.preset, **overrides)

    def params(self, shard_size: int | None = None) -> dict[str, Any]:
        """What a job records as its parameters."""
        return self.config(shard_size).to_dict() | {
            "preset": self.preset,
            "measure": self.measure,
            "skip_invalid": self.skip_invalid,
        }


class StagePublic(BaseModel):
    """The state of one pipeline stage."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    status: StageStatus
    progress: float
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobPublic(BaseModel):
    """A job as its owner sees it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    status: JobStatus
    stage: str | None = None
    progress: float = Field(ge=0, le=1)
    eta_seconds: float | None = None
    params: dict[str, Any]
    dataset_summary: Stored[DatasetSummary] = None
    metrics: Stored[ProtectionMeasurement] = Field(None, description="Present once the protection was measured.")
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    cancel_requested: bool = False
    stages: list[StagePublic] = []
    download_url: str | None = Field(None, description="Present once the job succeeded.")
    preview_url: str | None = Field(None, description="The list of previews, once there are some.")


class JobList(BaseModel):
    """One page of the owner's jobs, newest first."""

    items: list[JobPublic]
    total: int
    limit: int
    offset: int


class PreviewList(BaseModel):
    """The previews of a job: ``items`` as the pipeline wrote them; ``urls`` serve each PNG by file name."""

    items: list[Preview]
    urls: dict[str, str]


class HealthPart(BaseModel):
    """Whether one part of the service is up (the reason of a failure is in the server log)."""

    ok: bool


class Health(BaseModel):
    """The state of the database, the broker, storage, and the number of live workers."""

    status: Literal["ok", "degraded"]
    database: HealthPart
    broker: HealthPart
    storage: HealthPart
    workers: int = Field(description="Worker processes seen alive within the last lease.")


class Message(BaseModel):
    """An error or a short message."""

    detail: str


class FieldError(BaseModel):
    """One problem of a request: the field (or "request"), what is wrong, and the kind of error."""

    loc: list[str]
    msg: str
    type: str


class ValidationMessage(BaseModel):
    """A 422: ``detail`` names the bad field(s); ``errors`` lists each problem."""

    detail: str
    errors: list[FieldError] = []
