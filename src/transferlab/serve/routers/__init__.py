"""The app's routes, one :class:`fastapi.APIRouter` per concern: :mod:`.info` (``GET /health``,
``GET /model``), :mod:`.predict` (``POST /predict``), :mod:`.metrics` (``GET /metrics``) and :mod:`.pages`
(the web page at ``/``). The routes but ``/health`` and the page require the server's API key, if any."""
from . import info, metrics, pages, predict

__all__ = ["info", "metrics", "pages", "predict"]
