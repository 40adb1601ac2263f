"""The app's routes, one :class:`fastapi.APIRouter` per concern: :mod:`.info` (``GET /health``,
``GET /model``), :mod:`.predict` (``POST /predict``) and :mod:`.pages` (the web page at ``/``)."""
from . import info, pages, predict

__all__ = ["info", "pages", "predict"]
