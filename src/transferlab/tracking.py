"""Experiment tracking the way Keras, Lightning and fastai users already do it: ``--trackers tensorboard``
and ``--trackers mlflow`` (the optional ``[tracking]`` extra: ``pip install 'transferlab[tracking]'``).

Both are Keras-style training callbacks (the protocol of :mod:`transferlab.training.callbacks`), added
by the training session for ``train(..., trackers=[...])`` / ``--trackers``; only rank 0 writes.

* :class:`TensorBoardLogger` writes event files with PyTorch's ``SummaryWriter`` into
  ``RUN/tensorboard/`` in Keras's layout: ``train/`` and ``validation/`` hold ``epoch_loss`` and
  ``epoch_accuracy`` (so TensorBoard overlays them), ``train/`` also ``epoch_learning_rate``; at the
  end, the options and the best validation loss and accuracy go to the HParams dashboard.
  ``tensorboard --logdir runs`` compares every run.
* :class:`MLflowLogger` logs to ``MLFLOW_TRACKING_URI`` (any tracking server or database), else to
  MLflow's own local default (MLflow 3: ``./mlflow.db`` with artifacts in ``./mlruns``; ``mlflow ui``
  in that folder shows it), in the experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``transferlab``):
  the resolved options as params, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr`` per
  epoch, and ``config.json``. The run it logs to is kept in ``RUN/tracking.json``, so ``--resume``
  continues the same MLflow run and later stages add to it: :func:`log_evaluation` (called by
  ``transferlab.evaluation``) logs the evaluation's metrics, ``metrics.json`` and plots, and
  :func:`log_export` (called by ``transferlab run`` after exporting the best model) logs the
  exported model and its ``model.json``.

A tracker the user asked for that cannot start (extra not installed, server unreachable) stops the
run before its first epoch with a one-line error; a failure later (one epoch's metrics, an
evaluation's plots) is reported once and never loses the training or the evaluation.
"""
from __future__ import annotations

import importlib
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import runfolder
from ._callback import Callback
from .errors import ConfigError, TrackingError, TransferlabError  # noqa: F401 - TrackingError: raised here

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # the optional [tracking] extra, imported when a tracker starts
    from mlflow.tracking import MlflowClient

EXTRA = "pip install 'transferlab[tracking]'"
DEFAULT_EXPERIMENT = "transferlab"
# options that say where and how a run is trained, not what: left out of hparams / params
_NOT_HPARAMS = {"run_dir", "name", "resume", "overwrite", "device", "threads", "workers", "trackers", "cache"}
_PARAM_MAX = 500  # characters of one param value (MLflow accepts 6000; a class list can be longer)


def _require(module: str, flag: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"--trackers {flag} needs the tracking extra: {EXTRA}") from None


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": "1,2"}`` (values int, float, bool or str)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = ",".join(str(x) for x in v)
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[key] = "none" if v is None else v
        else:
            out[key] = str(v)
    return out


def run_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The options worth comparing runs by, flat: the resolved training options plus the data's
    classes count, split sizes, input config and pretrained weights (what ``config.json`` holds)."""
    keep = {k: v for k, v in config.items()
            if k not in _NOT_HPARAMS and k not in ("classes", "created", "versions", "adapted", "warnings")}
    return _flat(keep)


def _finite(logs: Mapping[str, Any], keys: Sequence[str]) -> dict[str, float]:
    out = {}
    for k in keys:
        v = logs.get(k)
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


def _best(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    accs = [float(r["val_acc"]) for r in history if isinstance(r.get("val_acc"), (int, float))
            and math.isfinite(float(r["val_acc"]))]
    losses = [float(r["val_loss"]) for r in history if isinstance(r.get("val_loss"), (int, float))
              and math.isfinite(float(r["val_loss"]))]
    return {**({"best_val_acc": max(accs)} if accs else {}), **({"best_val_loss": min(losses)} if losses else {})}


class Tracker(Callback):
    """A training callback (:mod:`transferlab.training.callbacks`' protocol) that writes on rank 0 only
    and is told the index of the run's last phase (it closes there)."""

    def __init__(self, run_dir: str | Path, final_phase: int = 0):
        self.run_dir = Path(run_dir)
        self.final_phase = int(final_phase)

    def _say(self, trainer, message: str) -> None:
        if getattr(trainer, "is_main", True):
            logger.info(message)

    def _last_phase(self, trainer) -> bool:
        """The run ends with this phase: its last one, or a --time-limit that will start no other."""
        return trainer.phase >= self.final_phase or any(getattr(cb, "expired", False) for cb in trainer.callbacks)


class TensorBoardLogger(Tracker):
    """Per-epoch loss, accuracy and learning rate as TensorBoard event files in ``RUN/tensorboard/``."""

    def __init__(self, run_dir: str | Path, final_phase: int = 0):
        super().__init__(run_dir, final_phase)
        _require("tensorboard", "tensorboard")
        self.writers: dict[str, Any] = {}

    def _writer(self, name: str):
        if name not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[name] = SummaryWriter(log_dir=str(runfolder.tensorboard_dir(self.run_dir) / name))
        return self.writers[name]

    def on_train_begin(self, trainer) -> None:
        if trainer.is_main and not self.writers:
            self._writer("train")
            self._writer("validation")
            self._say(trainer, f"tensorboard: event files in {runfolder.tensorboard_dir(self.run_dir)} "
                               f"(tensorboard --logdir {self.run_dir.parent})")

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        if not trainer.is_main:
            return
        train, val = self._writer("train"), self._writer("validation")
        for writer, split in ((train, "train"), (val, "val")):
            for key, tag in (("loss", "epoch_loss"), ("acc", "epoch_accuracy")):
                v = _finite(logs, [f"{split}_{key}"]).get(f"{split}_{key}")
                if v is not None:
                    writer.add_scalar(tag, v, epoch)
        if _finite(logs, ["lr"]):
            train.add_scalar("epoch_learning_rate", float(logs["lr"]), epoch)
        for w in (train, val):
            w.flush()

    def on_train_end(self, trainer) -> None:
        if not trainer.is_main or not self.writers:
            return
        if self._last_phase(trainer):
            config = runfolder.read_config(self.run_dir)
            best = {f"hparams/{k}": v for k, v in _best(trainer.history).items()}
            self.close()
            if best:  # the HParams dashboard's session, in RUN/tensorboard/ itself
                from torch.utils.tensorboard import SummaryWriter
                from torch.utils.tensorboard.summary import hparams

                with SummaryWriter(log_dir=str(runfolder.tensorboard_dir(self.run_dir))) as w:
                    for summary in hparams(run_params(config), best):
                        w.file_writer.add_summary(summary, trainer.epoch)
                    for k, v in best.items():
                        w.add_scalar(k, v, trainer.epoch)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()


def _client(tracking_uri: str | None = None) -> tuple[MlflowClient, str]:
    mlflow = _require("mlflow", "mlflow")
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()  # MLFLOW_TRACKING_URI, else MLflow's local default
    return MlflowClient(tracking_uri=uri), uri


def _experiment_id(client: MlflowClient) -> str:
    exp_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if exp_id:
        return exp_id
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created meanwhile by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class MLflowLogger(Tracker):
    """Params, per-epoch metrics and ``config.json`` to an MLflow run; the run id is kept in
    ``RUN/tracking.json`` (resume and later stages log to the same run)."""

    def __init__(self, run_dir: str | Path, final_phase: int = 0):
        super().__init__(run_dir, final_phase)
        _require("mlflow", "mlflow")
        self.client: MlflowClient | None = None
        self.run_id: str | None = None
        self.failed = False

    def on_train_begin(self, trainer) -> None:
        if not trainer.is_main:
            return
        known = runfolder.read_tracking(self.run_dir) or {}
        try:
            self.client, uri = _client(known.get("tracking_uri"))
            if known.get("run_id"):  # a resumed run, or this session's next phase
                resumed, self.run_id = self.run_id is None, known["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                if resumed:
                    self._say(trainer, f"mlflow: continuing run {self.run_id} at {uri}")
                return
            config = runfolder.read_config(self.run_dir)
            from mlflow.entities import Param

            run = self.client.create_run(_experiment_id(self.client), run_name=self.run_dir.name,
                                         tags={"transferlab.run_dir": str(self.run_dir.resolve()),
                                               "transferlab.recipe": str(config.get("model", ""))})
            self.run_id = run.info.run_id
            runfolder.write_tracking(self.run_dir, {"tracking_uri": uri, "experiment_id": run.info.experiment_id,
                                                    "run_id": self.run_id})
            params = [Param(k, str(v)[:_PARAM_MAX]) for k, v in run_params(config).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=params[i:i + 100])
            config_file = self.run_dir / runfolder.CONFIG
            if config_file.is_file():
                self.client.log_artifact(self.run_id, str(config_file))
        except ConfigError:
            raise
        except Exception as exc:
            raise TrackingError(f"--trackers mlflow: cannot start an MLflow run at {known.get('tracking_uri') or _uri()}: "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        self._say(trainer, f"mlflow: run {self.run_id} at {uri}")

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        if not trainer.is_main or self.client is None or self.run_id is None or self.failed:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = _finite(logs, ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"])
        try:
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, int(epoch)) for k, v in values.items()])
        except Exception as exc:  # never lose the training for a tracking hiccup
            self.failed = True
            self._say(trainer, f"mlflow: logging stopped at epoch {epoch}: {type(exc).__name__}: {exc}")

    def on_train_end(self, trainer) -> None:
        if not trainer.is_main or self.client is None or self.run_id is None or not self._last_phase(trainer):
            return
        try:
            best = _best(trainer.history)
            if best:
                from mlflow.entities import Metric

                now = int(time.time() * 1000)
                self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, int(trainer.epoch))
                                                            for k, v in best.items()])
            self.client.set_terminated(self.run_id, "FINISHED")
        except Exception as exc:
            self._say(trainer, f"mlflow: could not close run {self.run_id}: {type(exc).__name__}: {exc}")


def _uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or "MLflow's local default store"


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardLogger, "mlflow": MLflowLogger}


def make_trackers(names: Sequence[str], run_dir: str | Path, final_phase: int = 0) -> list[Tracker]:
    """The callbacks for ``--trackers NAMES`` (``"tensorboard"``, ``"mlflow"``), in that order."""
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"unknown --trackers {unknown[0]!r}: choose from {', '.join(TRACKERS)}")
    return [TRACKERS[n](run_dir, final_phase) for n in dict.fromkeys(names)]


# ---------------------------------------------------------------- later stages add to the MLflow run

def _logged_run(run_dir: str | Path):
    """``(client, run_id)`` of the MLflow run a run folder logs to, or None (not tracked, or no mlflow)."""
    info = runfolder.read_tracking(run_dir)
    if not info or not info.get("run_id"):
        return None
    try:
        importlib.import_module("mlflow")
    except ImportError:
        return None
    client, _ = _client(info.get("tracking_uri"))
    return client, info["run_id"]


def log_evaluation(run_dir: str | Path, metrics: Mapping[str, Any], out_dir: str | Path) -> bool:
    """Log an evaluation written to ``out_dir`` (``RUN/eval-<split>``) to the run's MLflow run, when it
    has one: its headline metrics as ``eval-<split>/accuracy``, ``eval-<split>/f1_macro``, ..., and
    ``metrics.json`` and the plots as artifacts under ``eval-<split>/``. Never raises."""
    try:
        found = _logged_run(run_dir)
        if found is None:
            return False
        client, run_id = found
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        macro = metrics.get("macro_avg") or {}
        auc = (metrics.get("roc_auc") or {}).get("macro")
        values = {"accuracy": metrics.get("accuracy"), "f1_macro": macro.get("f1"),
                  "precision_macro": macro.get("precision"), "recall_macro": macro.get("recall"), "auc_macro": auc,
                  "log_loss": metrics.get("log_loss"),
                  "ece": (metrics.get("calibration") or {}).get("ece_before"),
                  "ece_calibrated": (metrics.get("calibration") or {}).get("ece_after"),
                  "inference_ms_per_image": metrics.get("inference_ms_per_image")}
        out_dir = Path(out_dir)
        client.log_batch(run_id, metrics=[Metric(f"{out_dir.name}/{k}", float(v), now, 0)
                                          for k, v in _finite(values, list(values)).items()])
        files = [out_dir / runfolder.METRICS, *sorted(out_dir.glob("*.png"))]
        history = Path(run_dir) / runfolder.HISTORY
        for f in files:
            if f.is_file():
                client.log_artifact(run_id, str(f), artifact_path=out_dir.name)
        if history.is_file():
            client.log_artifact(run_id, str(history))
        return True
    except Exception as exc:  # the evaluation is written already: tracking must not lose it
        logger.warning(f"mlflow: could not log the evaluation: {type(exc).__name__}: {exc}")
        return False


def log_export(run_dir: str | Path, exported: str | Path) -> bool:
    """Log an exported model file and its ``model.json`` under ``model/`` to the run's MLflow run,
    when it has one. Never raises."""
    try:
        found = _logged_run(run_dir)
        if found is None:
            return False
        client, run_id = found
        meta = runfolder.export_dir(run_dir) / runfolder.EXPORT_META
        for f in (Path(exported), meta):
            if f.is_file():
                client.log_artifact(run_id, str(f), artifact_path="model")
        return True
    except Exception as exc:
        logger.warning(f"mlflow: could not log the exported model: {type(exc).__name__}: {exc}")
        return False
