"""The files of a ``POST /predict`` request: which were sent, and each one's pixels or the reason it
cannot be classified (with the status that file alone would get: 400 or 415)."""
from __future__ import annotations

import numpy as np
from fastapi import HTTPException, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from ..errors import DataError
from .state import Serving

MAX_FILES = 64
ALLOWED_TYPES = ("image/", "application/octet-stream")


async def collect_uploads(request: Request, files: list[UploadFile] | None,
                          file: UploadFile | None) -> list[UploadFile]:
    """The uploaded files (fields ``files`` and ``file``); a 400 when there are none or over ``MAX_FILES``."""
    uploads = (files or []) + ([file] if file is not None else [])
    if not uploads:
        form = await request.form() if "multipart/form-data" in request.headers.get("content-type", "") else None
        got = ", ".join(sorted({k for k in form.keys()})) if form else ""
        raise HTTPException(400, "no image uploaded: send it as multipart/form-data field 'files' (or 'file')"
                            + (f"; got field(s): {got}" if got else ""))
    if len(uploads) > MAX_FILES:
        raise HTTPException(400, f"too many files: at most {MAX_FILES} per request")
    return uploads


async def read_upload(up: UploadFile, serving: Serving) -> tuple[np.ndarray | None, int, str]:
    """(pixels, 200, "") for a good image, else (None, status, reason)."""
    ctype = (up.content_type or "").lower()
    if ctype and not ctype.startswith(ALLOWED_TYPES):
        return None, 415, f"not an image (content type {ctype}); send JPEG, PNG, BMP, GIF, WebP or TIFF"
    data = await up.read()
    await up.close()
    if not data:
        return None, 400, "empty file (zero bytes)"
    try:
        return await run_in_threadpool(serving.decode, data), 200, ""
    except DataError as exc:
        reason = str(exc).split(": ", 1)[-1]
        return None, (415 if reason.startswith("not an image") else 400), reason


def no_good_file(uploads: list[UploadFile], loaded: list[tuple[np.ndarray | None, int, str]]) -> HTTPException:
    """The error for a request none of whose files can be classified: every file's reason, with the
    files' own status when they agree, else 400."""
    names = [up.filename or f"file {i + 1}" for i, up in enumerate(uploads)]
    statuses = {status for _, status, _ in loaded}
    return HTTPException(statuses.pop() if len(statuses) == 1 else 400,
                         "; ".join(f"{name}: {reason}" for name, (_, _, reason) in zip(names, loaded)))
