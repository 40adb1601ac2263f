"""``POST /predict``: classify the uploaded images, micro-batched with concurrent requests."""
from __future__ import annotations

import asyncio
import time

import numpy as np
from fastapi import APIRouter, File, Query, Request, UploadFile

from ...tta import average_mirrors, with_mirrors
from ..access import ApiKeyDep
from ..batching import MicroBatcher
from ..schemas import FileError, Prediction, PredictResponse
from ..state import ServingDep
from ..uploads import collect_uploads, no_good_file, read_upload

router = APIRouter()


async def classify(batcher: MicroBatcher, batch: np.ndarray, tta: bool) -> np.ndarray:
    """Class probabilities for a batch of ``uint8`` pixels ``[n, S, S, 3]``; with ``tta``, averaged with
    the mirror images' (the images and their mirrors in one submission: one batching window, one model call)."""
    if tta:
        return average_mirrors(await batcher.submit(with_mirrors(batch, width_axis=2)))
    return await batcher.submit(batch)


@router.post("/predict", summary="classify one or more images (multipart field 'files' or 'file')",
             dependencies=[ApiKeyDep])
async def predict(
    request: Request,
    serving: ServingDep,
    files: list[UploadFile] | None = File(None, description="one or more images"),
    file: UploadFile | None = File(None, description="a single image (alternative to 'files')"),
    topk: int | None = Query(None, ge=1, le=1000, description="classes returned per image (default: the server's)"),
    tta: bool = Query(False, description="average with the horizontally flipped image"),
) -> PredictResponse:
    t0 = time.perf_counter()
    uploads = await collect_uploads(request, files, file)
    loaded = await asyncio.gather(*[read_upload(up, serving) for up in uploads])
    good = [px for px, _, _ in loaded if px is not None]
    if not good:  # nothing to classify: the request itself is bad
        raise no_good_file(uploads, loaded)
    probs = await classify(serving.batcher, np.stack(good), tta)
    elapsed = time.perf_counter() - t0
    serving.monitor.prediction_seconds.observe(elapsed)
    serving.monitor.images.inc(len(good))
    rows = iter(serving.predictor.rows(probs, serving.topk if topk is None else topk))
    predictions = [Prediction.from_row(up.filename, next(rows)) if px is not None
                   else FileError(filename=up.filename, error=reason, status=status)
                   for up, (px, status, reason) in zip(uploads, loaded)]
    return PredictResponse(predictions=predictions, backend=serving.predictor.backend,
                           errors=len(uploads) - len(good), time_ms=round(elapsed * 1000, 2))
