"""What the engine reports about a job, typed for the API: the dataset summary, the measured
protection and the previews.

The engine writes these as plain JSON (``DatasetIndex.summary``, ``stages.evaluate``,
``engine.previews``); the models below say field by field what it writes, so that clients and the
OpenAPI schema know the shape instead of guessing keys. Accuracies are fractions in [0, 1].
"""

import logging
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator

log = logging.getLogger(__name__)
T = TypeVar("T")

Fraction = Annotated[float, Field(ge=0, le=1)]
Size = tuple[int, int]  # width, height in pixels


class ClassCount(BaseModel):
    """One class of the dataset and its number of images."""

    name: str
    count: int


class DatasetSummary(BaseModel):
    """What the upload holds: counts per class, file formats and modes, image sizes."""

    num_images: int
    num_classes: int
    classes: list[ClassCount]
    formats: dict[str, int] = Field(description="Images per file format, e.g. {'PNG': 40}.")
    modes: dict[str, int] = Field(description="Images per colour mode, e.g. {'RGB': 40}.")
    min_size: Size | None = Field(None, description="Width and height of the smallest image (by area).")
    max_size: Size | None = Field(None, description="Width and height of the largest image (by area).")
    min_width: int
    max_width: int
    min_height: int
    max_height: int
    skipped: int = Field(description="Unreadable files left out (when the job skips invalid files).")


class AccuracyIntervals(BaseModel):
    """95% Wilson intervals [low, high] of a victim's accuracies on the held-out test images."""

    protected: tuple[Fraction, Fraction]
    clean: tuple[Fraction, Fraction] | None = None


class VictimResult(BaseModel):
    """One victim model (per defence and seed), trained on the protected and on the original images."""

    victim: str = Field(description="Name in the victim catalogue.")
    arch: str
    defense: str = Field(description="'none', 'grayscale' or 'jpeg:Q' (training-time defence).")
    seed: int
    resolution: int | None = Field(None, description="Square size in px the victim trained at (None: older jobs).")
    clean_acc: Fraction | None = Field(None, description="Final accuracy when trained on the original images.")
    clean_best_acc: Fraction | None = Field(None, description="Best epoch's accuracy, trained on the originals.")
    protected_acc: Fraction = Field(description="Final accuracy when trained on the protected images.")
    protected_best_acc: Fraction = Field(description="Best epoch's accuracy, trained on the protected images.")
    interval95: AccuracyIntervals


class VictimTraining(BaseModel):
    """How the victims were trained: their names, the seeds, each victim's epochs and the resolutions."""

    victims: list[str]
    seeds: list[int]
    epochs: list[int]
    resolutions: list[int] | None = Field(None, description="Square sizes in px the victims trained at.")


class ResolutionMeans(BaseModel):
    """Means and spreads of the victims without a defence that trained at one resolution."""

    resolution: int = Field(description="Square size in px.")
    mean_protected_acc: Fraction
    spread_protected_acc: float
    mean_clean_acc: Fraction | None = None
    spread_clean_acc: float | None = None


class ProtectionMeasurement(BaseModel):
    """Victims trained on the protected images versus on the originals, tested on held-out originals.
    Means and spreads are over the victims without a defence, at every resolution they trained at."""

    victims: list[VictimResult]
    mean_protected_acc: Fraction
    spread_protected_acc: float
    mean_clean_acc: Fraction | None = None
    spread_clean_acc: float | None = None
    by_resolution: list[ResolutionMeans] | None = Field(None, description="The means per victim resolution.")
    test_images: int = Field(description="Held-out original images every victim is tested on.")
    holdout_images: int | None = Field(None, description="Images of the dataset kept out of training.")
    chance: Fraction = Field(description="The accuracy of guessing: 1 / number of classes.")
    settings: VictimTraining
    warnings: list[str] = Field(description="Plain words when the numbers cannot carry a conclusion.")


class Preview(BaseModel):
    """One image before and after protection: the file names of its thumbnails and how close they are."""

    index: int
    path: str = Field(description="The image's path inside the dataset.")
    class_name: str = Field(alias="class")
    width: int
    height: int
    original: str = Field(description="File name of the original's thumbnail.")
    protected: str = Field(description="File name of the protected image's thumbnail.")
    delta: str = Field(description="File name of the perturbation, amplified so that it can be seen.")
    psnr: float = Field(description="Peak signal-to-noise ratio in dB (100 for identical images).")
    ssim: float = Field(description="Structural similarity (1 = identical).")


def _readable_or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A stored payload as its model, or None when the row holds a shape this version cannot read
    (one written by an earlier version): the job is still shown, without that part."""
    try:
        return handler(value)
    except ValidationError as exc:
        log.warning("a stored %s is not shown: %d field(s) differ", exc.title, exc.error_count())
        return None


Stored = Annotated[T | None, WrapValidator(_readable_or_none)]
