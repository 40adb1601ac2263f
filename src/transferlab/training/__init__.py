"""Training: ``transferlab.train(data, model=..., ...) -> Run``.

* :func:`train` / :class:`Run` -- the API (:mod:`.api`, :mod:`.run`);
* :class:`TrainConfig` -- every option, validated (:mod:`.config`);
* :class:`Trainer` -- the plain epoch loop, and :class:`Runtime` -- where and how it runs (:mod:`.loop`);
* the phases (:mod:`.phases`), the resume state (:mod:`.state`), the run folder's guard (:mod:`.folder`);
* callbacks: :class:`EarlyStopping`, :class:`ModelCheckpoint`, :class:`ReduceLROnPlateau`,
  :class:`LambdaCallback`, or your own :class:`Callback` (:mod:`.callbacks`);
* optimizers and lr schedules (:mod:`.schedule`), feature caching (:mod:`.features`),
  reproducible sampling (:mod:`.sampling`), DistributedDataParallel under torchrun (:mod:`.distributed`).

>>> import transferlab as tl
>>> run = tl.train("DATA", model="cnn_bn", epochs=5)     # doctest: +SKIP
"""
from __future__ import annotations

from .._lazy import lazy_exports

# Imported on first use: the CLI builds `transferlab train --help` from TrainConfig (.config, no
# torch) and must not load PyTorch for it (see transferlab/_lazy.py).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".api": ("train",),
    ".run": ("Run",),
    ".config": ("TrainConfig",),
    ".loop": ("Runtime", "Trainer"),
    ".callbacks": ("Callback", "EarlyStopping", "LambdaCallback", "ModelCheckpoint", "ReduceLROnPlateau"),
})
