"""The offline web page (``/``, its favicon; its assets are mounted at ``/static`` by the app)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/favicon.ico")
async def favicon():
    return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon")


@router.get("/")
async def index():
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
