"""Training: ``transferlab.train(data, model=..., ...) -> Run``.

* :func:`train` / :class:`Run` -- the API (:mod:`.api`, :mod:`.run`);
* :class:`TrainConfig` -- every option, validated (:mod:`.config`);
* :class:`Trainer` -- the plain epoch loop (:mod:`.loop`);
* callbacks: :class:`EarlyStopping`, :class:`ModelCheckpoint`, :class:`ReduceLROnPlateau`,
  :class:`LambdaCallback`, or your own :class:`Callback` (:mod:`.callbacks`);
* optimizers and lr schedules (:mod:`.schedule`), feature caching (:mod:`.features`),
  DistributedDataParallel under torchrun (:mod:`.distributed`).

>>> import transferlab as tl
>>> run = tl.train("DATA", model="cnn_bn", epochs=5)     # doctest: +SKIP
"""
from __future__ import annotations

from .._callable import make_callable
from .api import train
from .callbacks import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint, ReduceLROnPlateau
from .config import TrainConfig
from .loop import Trainer
from .run import Run

__all__ = ["train", "Run", "TrainConfig", "Trainer", "Callback", "EarlyStopping", "ModelCheckpoint",
           "ReduceLROnPlateau", "LambdaCallback"]

make_callable(__name__, "train")
