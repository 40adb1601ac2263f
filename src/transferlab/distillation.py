"""``distill(teacher, student=...)``: train a small model on a teacher's soft labels.

The teacher is any run ``predict`` can use: a trained run (its best checkpoint, or its export) or the
``ensemble`` row of ``compare`` (one ONNX graph). It runs **once**, over the training images without
augmentation, through the same :class:`~transferlab.predictor.Predictor` that ``predict`` uses (its
calibrated probabilities, so a teacher's over-confidence is not copied); the probabilities are cached
on disk (``$TRANSFERLAB_CACHE/teacher-probs/KEY.npy``, keyed by the teacher's model file, its
temperature, TTA and the training files) and read a batch at a time while the student trains. The
student is then an ordinary ``train`` run on the same split, whose loss is
:class:`~transferlab.training.losses.DistillationLoss` (the teacher softened by ``temperature``, KL
divergence weighted ``alpha``, plus the run's own cross-entropy on the true labels weighted
``1 - alpha``); it is evaluated, exported, predicted and served like any run.

The student sees augmented images where the teacher saw the plain ones (the price of running the
teacher once); its validation split, and so its best epoch, is judged on the true labels only.

>>> import transferlab as tl
>>> run = tl.distill("out/runs/ensemble", student="efficientnet_lite0", temperature=4.0,
...                  alpha=0.9, epochs=5)                                    # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import runfolder
from ._atomic import write_json
from ._progress import track
from ._rows import RowFile, RowWriter
from .choices import DISTILL_ALPHA, DISTILL_TEMPERATURE
from .data.cache import default_cache_root
from .data.images import quiet_pil_warnings
from .data.types import DataSplits
from .errors import ConfigError, DataError
from .predictor import Predictor
from .training import train
from .training.losses import Distillation
from .training.run import Run

logger = logging.getLogger("transferlab.distillation")

__all__ = ["distill", "teacher_probabilities", "teacher_config"]

#: images read and classified per teacher call
CHUNK = 64


def teacher_config(teacher: Path) -> dict[str, Any]:
    """The training record of ``teacher``: its ``config.json``, or for an ensemble (an export folder
    with members and no config of its own) its first member's, which the members share the data of."""
    config = runfolder.read_config(teacher)
    if config:
        return config
    members = (runfolder.read_export_meta(teacher) or {}).get("members") or []
    for member in members:
        config = runfolder.read_config(member.get("run", ""))
        if config:
            return config
    raise DataError(f"{teacher} records no training data (no config.json, no ensemble members); pass DATA")


def _teacher_key(predictor: Predictor, paths: list[str], tta: bool) -> str:
    """The cache key of a teacher's probabilities: its model file (content), temperature and TTA, and
    the files (path, size, mtime) in order."""
    h = hashlib.sha256()
    h.update(json.dumps({"model": runfolder.file_sha256(predictor.model_file), "backend": predictor.backend,
                         "temperature": predictor.temperature, "tta": bool(tta), "format": 1}).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"\0{p}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def teacher_probabilities(predictor: Predictor, samples: list[tuple[str, int]], *, tta: bool = False,
                          cache_dir: str | os.PathLike | None = None, progress: bool = True) -> tuple[RowFile, dict]:
    """The teacher's calibrated probabilities ``[N, C]`` for ``samples`` (in order), computed once and
    kept in a row file on disk (reused when the teacher and the files are unchanged). Returns the file
    and a summary (``agreement``: the share of images whose top class is their label; ``unreadable``:
    images the teacher could not read, which keep their one-hot label as the target)."""
    paths = [str(p) for p, _ in samples]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_root() / "teacher-probs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_teacher_key(predictor, paths, tta)}.npy"
    summary_path = path.with_suffix(".json")
    if path.is_file() and summary_path.is_file():
        logger.info(f"teacher probabilities: cached in {path}")
        return RowFile(path), json.loads(summary_path.read_text())
    n_classes = len(predictor.classes)
    agree, unreadable = 0, 0
    chunks = [samples[i:i + CHUNK] for i in range(0, len(samples), CHUNK)]
    with RowWriter(path, n=len(samples), row_shape=(n_classes,)) as out, quiet_pil_warnings(), \
            ThreadPoolExecutor(max_workers=predictor.threads) as pool:
        for chunk in track(chunks, "teacher", progress=progress):
            loaded = list(pool.map(predictor.preprocess.try_load, [p for p, _ in chunk]))
            ok = np.array([isinstance(a, np.ndarray) for a in loaded])
            labels = np.array([y for _, y in chunk], np.int64)
            rows = np.zeros((len(chunk), n_classes), np.float32)
            if ok.any():
                rows[ok] = predictor.predict_arrays(np.stack([a for a, good in zip(loaded, ok) if good]), tta=tta)
            rows[np.flatnonzero(~ok), labels[~ok]] = 1.0  # an unreadable image keeps its label
            unreadable += int((~ok).sum())
            agree += int((rows[ok].argmax(1) == labels[ok]).sum())
            out.write(rows)
    summary = {"images": len(samples), "agreement": agree / max(len(samples) - unreadable, 1),
               "unreadable": unreadable}
    write_json(summary_path, summary)
    return RowFile(path), summary


def distill(teacher: str | os.PathLike, data=None, *, student: str = "mobilenet_v2",
            temperature: float = DISTILL_TEMPERATURE, alpha: float = DISTILL_ALPHA, teacher_tta: bool = False,
            backend: str = "auto", progress: bool = True,
            callbacks: list | None = None, **options) -> Run:
    """Train ``student`` (a recipe) on ``teacher``'s soft labels and return its :class:`Run`.

    ``data``: the teacher's own data by default (read from its config.json), split with the teacher's
    validation ratio and seed so the student validates on the images the teacher did not train on;
    another folder or ready :class:`~transferlab.data.DataSplits` may be given (its classes must be
    the teacher's). ``temperature`` (> 0) softens the teacher, ``alpha`` in [0, 1] weighs the soft term
    against the true labels; ``teacher_tta`` averages the teacher with mirrored images; ``backend`` is
    the teacher's (see :class:`~transferlab.predictor.Predictor`). Other options are ``train``'s
    (``epochs``, ``fine_tune``, ``name`` -- default ``STUDENT-distilled`` --, ``run_dir``, ...).
    """
    if not (isinstance(temperature, (int, float)) and temperature > 0 and np.isfinite(temperature)):
        raise ConfigError(f"--temperature must be a number > 0, got {temperature}")
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ConfigError(f"--alpha must be a number in [0, 1], got {alpha}")
    teacher_dir = runfolder.existing_run(teacher)
    predictor = Predictor(teacher_dir, backend=backend, reject=False)
    # the teacher's split (its val ratio and seed), so the student validates where the teacher did not train
    config = teacher_config(teacher_dir) if not isinstance(data, DataSplits) else {}
    options.pop("val_ratio", None)
    splits, source, _ = runfolder.load_run_splits(teacher_dir, config, data, progress=progress)
    if list(splits.classes) != list(predictor.classes):
        raise ConfigError(f"the teacher's classes ({', '.join(predictor.classes[:5])}...) are not the data's "
                          f"({', '.join(list(splits.classes)[:5])}...): distill on the data the teacher knows")
    if not splits.train:
        raise ConfigError("no training images to distill on")
    logger.info(f"teacher {teacher_dir} ({predictor.meta.get('recipe')}, {predictor.backend}, temperature "
                f"{predictor.temperature:.3g}) on {len(splits.train)} training images of {source}")
    probs, summary = teacher_probabilities(predictor, splits.train, tta=teacher_tta, progress=progress)
    logger.info(f"teacher agrees with {summary['agreement']:.1%} of the training labels"
                + (f"; {summary['unreadable']} unreadable image(s) keep their label" if summary["unreadable"] else ""))
    record = {"teacher": str(teacher_dir), "teacher_recipe": predictor.meta.get("recipe"),
              "teacher_model_file": str(predictor.model_file), "teacher_backend": predictor.backend,
              "teacher_calibration_temperature": predictor.temperature, "teacher_tta": bool(teacher_tta),
              "temperature": float(temperature), "alpha": float(alpha), "soft_targets": probs.path, **summary}
    if options.get("name") is None:
        options["name"] = f"{student}-distilled"
    return train(splits, model=student, callbacks=callbacks, progress=progress,
                 distillation=Distillation(probs, float(temperature), float(alpha), record), **options)
