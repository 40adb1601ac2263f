"""transferlab: a folder of labelled images in, a trained, evaluated and deployed classifier out.

The data flows one way through the modules::

    data -> models -> train -> evaluate -> compare -> export -> predict/serve

The common path is one call per stage, e.g.::

    import transferlab as tl
    run = tl.train("DATA", model="mobilenet_v2", epochs=5)
    tl.evaluate(run)
"""
from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting collapse PyTorch's CPU speed as soon as another process
# (a DataLoader worker, a server's decoder, another job) wants a core: measured here, a small CNN
# training step fell from ~1,300 to ~70 images/s with 2 threads on 2 busy cores. Passive waiting
# keeps the speed. Set before torch is imported (libgomp reads it once); a user's setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Messages go through logging (loggers under "transferlab"); this shows them on stdout unless the CLI
# or the application says otherwise (see transferlab/_logging.py).
from . import _logging  # noqa: E402,F401

# Public API, imported lazily so that `import transferlab` (and the CLI's --help) stays cheap.
# The stage modules train, evaluate, compare, export and predict are callable:
# ``transferlab.train(...)`` is ``transferlab.train.train(...)``.
_STAGES = ("data", "models", "train", "evaluate", "compare", "export", "predict", "serve")
_LAZY = {
    "load_data": "transferlab.data",
    "create_model": "transferlab.models",
    "list_recipes": "transferlab.models",
    "Run": "transferlab.train",
    "Predictor": "transferlab.predict",
}


def __getattr__(name: str):
    import importlib

    if name in _STAGES:
        return importlib.import_module(f"transferlab.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'transferlab' has no attribute {name!r}")


__all__ = ["__version__", *_STAGES, *_LAZY]
