"""``GET /health`` (liveness and serving statistics, open to all) and ``GET /model`` (what the server runs,
behind the API key when the server has one)."""
from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter

from ..access import ApiKeyDep
from ..schemas import Health, ModelInfo
from ..state import MB, ServingDep

router = APIRouter()


def val_accuracy(metrics: dict | None, source: str | None) -> float | None:
    """Validation accuracy from evaluation metrics (``accuracy``) or a checkpoint's (``val_acc``)."""
    if not metrics:
        return None
    value = metrics.get("val_acc") if source == "checkpoint" else metrics.get("accuracy", metrics.get("val_acc"))
    return float(value) if isinstance(value, (int, float)) else None


@router.get("/health", summary="liveness and serving statistics")
async def health(serving: ServingDep) -> Health:
    sizes = list(serving.batcher.batch_sizes)
    return Health(backend=serving.predictor.backend, uptime_s=round(time.time() - serving.started_at, 1),
                  model_calls=serving.batcher.calls, mean_batch=round(float(np.mean(sizes)), 2) if sizes else None)


@router.get("/model", summary="the model: recipe, classes, input size, backend, metrics", dependencies=[ApiKeyDep])
async def model_info(serving: ServingDep) -> ModelInfo:
    return ModelInfo(**serving.predictor.info, metrics=serving.metrics, metrics_source=serving.metrics_source,
                     val_accuracy=val_accuracy(serving.metrics, serving.metrics_source),
                     max_upload_mb=serving.max_upload_bytes / MB, topk=serving.topk)
