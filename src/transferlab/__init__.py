"""transferlab: a folder of labelled images in, a trained, evaluated and deployed classifier out.

The data flows one way through the modules::

    data -> models -> training -> evaluation -> comparison -> exporter -> predictor/serve

The common path is one call per stage, e.g.::

    import transferlab as tl
    run = tl.train("DATA", model="mobilenet_v2", epochs=5)
    tl.evaluate(run)
"""
from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# OpenMP threads that spin while waiting collapse PyTorch's CPU speed as soon as another process
# (a DataLoader worker, a server's decoder, another job) wants a core: measured here, a small CNN
# training step fell from ~1,300 to ~70 images/s with 2 threads on 2 busy cores. Passive waiting
# keeps the speed. Set before torch is imported (libgomp reads it once); a user's setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Messages go through logging (loggers under "transferlab"); this shows them on stdout unless the CLI
# or the application says otherwise (see transferlab/_logging.py).
from . import _logging  # noqa: E402,F401

# Public API, imported lazily so that `import transferlab` (and the CLI's --help) stays cheap (the
# stages load PyTorch). The stages' functions are plain functions: ``transferlab.train(...)`` is
# ``transferlab.training.train``; type checkers read them from the imports below.
if TYPE_CHECKING:
    from .comparison import compare as compare
    from .data import load_data as load_data
    from .distillation import distill as distill
    from .evaluation import evaluate as evaluate
    from .exporter import export as export
    from .models import create_model as create_model
    from .models import list_recipes as list_recipes
    from .predictor import Predictor as Predictor
    from .predictor import predict as predict
    from .training import Run as Run
    from .training import train as train

_MODULES = ("data", "models", "training", "evaluation", "comparison", "exporter", "predictor", "serve", "doctor")
_LAZY = {
    "train": "transferlab.training",
    "evaluate": "transferlab.evaluation",
    "compare": "transferlab.comparison",
    "distill": "transferlab.distillation",
    "export": "transferlab.exporter",
    "predict": "transferlab.predictor",
    "load_data": "transferlab.data",
    "create_model": "transferlab.models",
    "list_recipes": "transferlab.models",
    "Run": "transferlab.training",
    "Predictor": "transferlab.predictor",
}


def __getattr__(name: str):
    import importlib

    if name in _MODULES:
        return importlib.import_module(f"transferlab.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # cached: the next access is a plain attribute
        return value
    raise AttributeError(f"module 'transferlab' has no attribute {name!r}")


__all__ = ["__version__", *_MODULES, *_LAZY]
