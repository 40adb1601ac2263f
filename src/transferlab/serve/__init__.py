"""Serve a trained run as a REST API and an offline web page (FastAPI + uvicorn).

>>> from transferlab.serve import create_app
>>> app = create_app("runs/mobilenet_v2", max_upload_mb=10)      # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)  or  transferlab serve runs/mobilenet_v2
"""
from .app import create_app, serve
from .batching import MicroBatcher

__all__ = ["create_app", "serve", "MicroBatcher"]
