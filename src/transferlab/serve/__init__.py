"""Serve a trained run as a REST API and an offline web page (FastAPI + uvicorn).

>>> from transferlab.serve import create_app
>>> app = create_app("runs/mobilenet_v2", max_upload_mb=10)      # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)  or  transferlab serve runs/mobilenet_v2

Modules: :mod:`.app` (``create_app``, the request limits), :mod:`.routers` (the routes, one
``APIRouter`` per concern), :mod:`.state` (what the routes share, through ``Depends``), :mod:`.schemas`
(the JSON answers), :mod:`.uploads` (reading the uploaded files), :mod:`.batching` (micro-batching).
"""
from .app import create_app, serve
from .batching import MicroBatcher

__all__ = ["create_app", "serve", "MicroBatcher"]
