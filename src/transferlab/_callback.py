"""The training-callback protocol with no-op defaults, in a module that imports nothing.

:class:`transferlab.training.callbacks.Callback` is this class; it lives here so that modules the
trainer must not pull in (``transferlab.tracking``, which keeps PyTorch out of its import) can
subclass it too. The protocol itself is documented in :mod:`transferlab.training.callbacks`.
"""
from __future__ import annotations

from typing import Any


class Callback:
    """Base class of training callbacks: every hook does nothing until overridden.

    >>> class Count(Callback):
    ...     def __init__(self):
    ...         self.epochs = 0
    ...     def on_epoch_end(self, trainer, epoch, logs):
    ...         self.epochs += 1
    >>> c = Count(); c.on_train_begin(None); c.on_epoch_end(None, 0, {}); c.epochs, c.stop_training
    (1, False)
    """

    stop_training: bool = False

    def on_train_begin(self, trainer) -> None: ...
    def on_epoch_begin(self, trainer, epoch: int) -> None: ...
    def on_train_batch_begin(self, trainer, step: int) -> None: ...
    def on_train_batch_end(self, trainer, step: int, logs: dict[str, Any]) -> None: ...
    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, trainer) -> None: ...

    @property
    def state_key(self) -> str:
        """The key this callback's state is saved under in a run's resume state (as Lightning's
        ``Callback.state_key``): the class name, plus what sets two of a kind apart."""
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
