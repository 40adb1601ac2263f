"""Where transferlab's messages go: every module logs to ``logging.getLogger(__name__)`` (loggers
under ``transferlab``), and one handler on the ``transferlab`` logger shows them.

By default (a script, a notebook: ``tl.train(...)``) that handler writes each message as a plain
line to the current ``sys.stdout``, at INFO and above -- what users of the API saw before. Records
also propagate, so an application's own logging configuration (and pytest's ``caplog``) sees them;
an application that routes them itself removes ours with :func:`use_own_handlers`. The CLI installs
:class:`ConsoleHandler` instead (:func:`cli_handler`): the same lines through a rich console,
warnings in yellow and errors in red. A DDP rank other than 0 is quiet below WARNING
(:func:`quiet_below_warning`).

>>> import logging
>>> logging.getLogger("transferlab.training").info("epoch 1/3 ...")        # doctest: +SKIP
epoch 1/3 ...
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from rich.console import Console

ROOT = "transferlab"


class StdoutHandler(logging.Handler):
    """Each record's message as a line on the *current* ``sys.stdout`` (so a notebook cell, a
    redirected stream or a progress bar's redirect gets it), like ``print``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


class ConsoleHandler(logging.Handler):
    """The CLI's handler: each message through a rich console on the current stdout, unwrapped and
    unhighlighted (lines stay greppable), warnings in yellow, errors in red."""

    STYLES = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "bold red"}

    def __init__(self, console: Console | None = None):
        super().__init__()
        self.console = console or Console(soft_wrap=True)  # file None: sys.stdout when printing

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), style=self.STYLES.get(record.levelno), markup=False,
                               highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def _install_default() -> None:
    logger = logging.getLogger(ROOT)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, StdoutHandler | ConsoleHandler) for h in logger.handlers):
        logger.addHandler(StdoutHandler())


def use_own_handlers() -> None:
    """Remove transferlab's handler: its messages then reach only the application's handlers (they
    propagate to the root logger)."""
    logger = logging.getLogger(ROOT)
    for h in [h for h in logger.handlers if isinstance(h, StdoutHandler | ConsoleHandler)]:
        logger.removeHandler(h)


@contextlib.contextmanager
def cli_handler(console: Console | None = None) -> Iterator[ConsoleHandler]:
    """The CLI's rich handler in place of the default one for the ``with`` block."""
    logger = logging.getLogger(ROOT)
    saved = list(logger.handlers)
    use_own_handlers()
    handler = ConsoleHandler(console)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        for h in saved:
            if h not in logger.handlers:
                logger.addHandler(h)


def quiet_below_warning() -> int:
    """Only warnings and errors from this process (a DDP rank other than 0: rank 0 speaks for all);
    returns the level it had."""
    logger = logging.getLogger(ROOT)
    level = logger.level
    logger.setLevel(logging.WARNING)
    return level


_install_default()
