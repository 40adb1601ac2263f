"""Package exports imported on first use (PEP 562), for packages on the CLI's and the server's
start-up path: importing them eagerly would load PyTorch (3.1 s and ~480 MB of RSS on the
project's machine, measured), which ``transferlab --help`` and an ONNX server must not pay.

Usage, in a package's ``__init__.py``::

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {".api": ("train",), ".run": ("Run",)})
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: each name is imported from its submodule
    (relative to the package) the first time it is used, then cached in the package."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__, list(where)
