"""Let a stage module be called like its main function.

The stages are modules a newcomer finds by name (``transferlab.train``,
``transferlab.evaluate``, ...) and, as in the docs, the common path is one call:
``transferlab.train("DATA", model="mobilenet_v2")``. Importing a submodule binds
the module to the package attribute, so the module itself is made callable:
``transferlab.train(...)`` is ``transferlab.train.train(...)``.
"""
from __future__ import annotations

import sys
import types


def make_callable(module_name: str, function_name: str) -> None:
    """Make ``sys.modules[module_name](...)`` call its ``function_name``."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, function_name)(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
