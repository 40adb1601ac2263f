"""The JSON the API answers with (response models: they validate the answers and document them in
``/openapi.json`` and ``/docs``). Errors answer ``{"detail": "..."}`` (see :mod:`.app`)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    """``GET /health``: liveness and serving statistics."""

    status: Literal["ok"] = "ok"
    backend: str
    uptime_s: float
    model_calls: int = Field(description="batched model calls so far")
    mean_batch: float | None = Field(description="mean images per model call (recent calls); null before the first")


class ModelInfo(BaseModel):
    """``GET /model``: :attr:`transferlab.predictor.Predictor.info`, the run's metrics and the server's limits."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())  # extra: whatever else Predictor.info says

    recipe: str | None
    classes: list[str]
    num_classes: int
    backend: str
    model_file: str
    input_size: int | None
    load_size: int | None
    mean: list[float] | None
    std: list[float] | None
    interpolation: str | None
    threads: int
    metrics: dict[str, Any] | None
    metrics_source: str | None = Field(description="'eval-val/metrics.json' or 'checkpoint'")
    val_accuracy: float | None
    max_upload_mb: float
    topk: int = Field(description="classes per image unless a request asks otherwise")
    rejection: dict[str, Any] | None = Field(None, description="the 'unknown' rule: score, accept_rate, threshold")


class TopClass(BaseModel):
    """One of an image's most probable classes."""

    class_: str = Field(alias="class")
    index: int
    prob: float


class Prediction(BaseModel):
    """A classified file: its answer (``label``: the most probable class, or ``"unknown"`` when the photo
    scores below the run's threshold), the top class's ``prob`` and its ``top`` classes."""

    filename: str | None
    label: str
    prob: float
    top: list[TopClass]
    score: float = Field(description="what the 'unknown' threshold is compared with: the calibrated top probability")
    unknown: bool = Field(description="true when the photo looks like none of the classes (label 'unknown')")
    labels: list[TopClass] | None = Field(
        default=None, description="multi-label runs: every class at or above its threshold, most probable first "
                                  "(label joins them with ';'); null for single-label runs")

    @classmethod
    def from_row(cls, filename: str | None, row: dict) -> Prediction:
        """From :meth:`transferlab.predictor.Predictor.rows`'s row for the file."""
        return cls(filename=filename, label=row["label"], prob=row["prob"], score=row["score"],
                   unknown=row["unknown"], top=[TopClass.model_validate(t) for t in row["top"]],
                   labels=None if row.get("labels") is None else [TopClass.model_validate(t) for t in row["labels"]])


class FileError(BaseModel):
    """A file that could not be classified, in place of its prediction (the request's other files are answered)."""

    filename: str | None
    error: str
    status: int = Field(description="the HTTP status the file alone would get (400, 415)")


class PredictResponse(BaseModel):
    """``POST /predict``: one entry per uploaded file, in upload order."""

    predictions: list[Prediction | FileError]
    backend: str
    errors: int = Field(description="files answered with an error entry")
    time_ms: float
