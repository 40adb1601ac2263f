"""The run folder of one training, from the first check to the release (:class:`RunFolderGuard`).

The folder's format (file names, readers, writers, the lock) belongs to :mod:`transferlab.runfolder`;
this is what a training does with it: check what it may do there (new run or resume), lock it
against a second writer and empty it for ``--overwrite`` (rank 0, the other ranks wait), append the
log to its ``train.log`` while it is held, and remove what a run wrote when it failed before its
first committed epoch (such a run is not resumable).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from .. import runfolder
from .._logging import ROOT
from . import distributed as D


class RunFolderGuard:
    """One training's hold on its run folder ``path`` (``dist``: the ranks, rank 0 does the writing)."""

    def __init__(self, path: Path, dist: D.DistInfo):
        self.path = path
        self.dist = dist
        self.lock: runfolder.RunLock | None = None

    def check(self, *, resume: bool, overwrite: bool) -> str:
        """``"new"`` or ``"resume"``; a ConfigError when the folder holds what must not be overwritten."""
        return runfolder.check_run_dir(self.path, resume=resume, overwrite=overwrite)

    @property
    def held(self) -> bool:
        return self.lock is not None and self.lock.held

    def append_log(self, message: str) -> None:
        """Add ``message`` to train.log once the folder is ours."""
        if self.held:
            runfolder.append_log(self.path, message)

    @contextlib.contextmanager
    def logging_to_train_log(self) -> Iterator[None]:
        """What transferlab's loggers say in the ``with`` block (INFO and above) also goes to train.log
        while the folder is ours."""
        handler = _TrainLog(self)
        root = logging.getLogger(ROOT)
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)

    @contextlib.contextmanager
    def taken(self, mode: str, *, overwrite: bool) -> Iterator[RunFolderGuard]:
        """Hold the folder for the ``with`` block: locked (and emptied for ``--overwrite`` of a new run)
        on entry, released on exit; an exception leaves no trace of a run that committed no epoch."""
        self.take(mode, overwrite=overwrite)
        try:
            with self.logging_to_train_log():
                yield self
        except BaseException:
            self.clean_up_failed_start(overwrite=overwrite)
            raise
        finally:
            if self.lock is not None:
                self.lock.release()

    def take(self, mode: str, *, overwrite: bool) -> None:
        """Lock the run folder (rank 0) and empty it for ``--overwrite``; the other ranks wait."""
        D.barrier(self.dist)
        if self.dist.is_main:
            self.lock = runfolder.RunLock(self.path).acquire()
            if mode == "new" and overwrite:
                runfolder.clear_run_dir(self.path)
        D.barrier(self.dist)

    def clean_up_failed_start(self, *, overwrite: bool) -> None:
        """A run that committed no epoch is not resumable: remove what it wrote (rank 0)."""
        if not self.dist.is_main or self.lock is None or runfolder.has_state(self.path):
            return
        if self.lock.created or overwrite:
            runfolder.clear_run_dir(self.path)
            self.lock.release(remove_if_empty=True)
            if self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()


class _TrainLog(logging.Handler):
    """Appends each message to a held run folder's train.log."""

    def __init__(self, folder: RunFolderGuard):
        super().__init__()
        self.folder = folder

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.folder.append_log(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
