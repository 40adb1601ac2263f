"""Classify images with a trained run: ONNX Runtime when the run was exported, else PyTorch.

:class:`Predictor` loads the model once (``RUN/export/model.onnx`` through ONNX Runtime, or the
run's ``best.safetensors`` through PyTorch) and preprocesses exactly like evaluation does:
decode with :func:`transferlab.data.open_image` (RGB, EXIF-rotated), resize the shorter side to
``data_cfg["load_size"]`` and centre-crop it square (:func:`transferlab.data.load_image`), then the
eval transform :func:`transferlab.data.build_transform` (``train=False``).

>>> import transferlab as tl
>>> rows = tl.predict("runs/mobilenet_v2", ["photos/", "cat.jpg"], topk=3)   # doctest: +SKIP
>>> rows[0]["label"], rows[0]["prob"], rows[0]["top"][:2]                  # doctest: +SKIP
('cat', 0.97, [{'class': 'cat', 'index': 0, 'prob': 0.97}, {'class': 'dog', ...}])

Broken files are reported, not fatal: their row is ``{"path": ..., "error": "truncated image"}``.

"None of these": when ``evaluate`` chose a rejection threshold on the validation split (stored with the
temperature, :mod:`transferlab.ood`), a photo whose calibrated top probability is below it is answered
``"label": "unknown"`` with ``"unknown": True`` and its ``"score"`` (``top`` still lists the classes).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .tta import average_mirrors, with_mirrors
from . import ood, runfolder
from ._progress import track
from .choices import BACKENDS
from .data.images import quiet_pil_warnings
from .data.layout import expand_paths
from .errors import ConfigError, TransferlabError
from .runtime import Preprocess, compile_openvino, default_threads, openvino_logits, ort_session, sigmoid, softmax

__all__ = ["Predictor", "predict", "expand_paths", "topk_rows", "BACKENDS"]


# backend -> (its file in RUN/export, the export options that write it)
EXPORTED = {"onnx": (runfolder.ONNX_NAME, ""), "int8": (runfolder.INT8_NAME, " --quantize int8"),
            "openvino": (runfolder.OPENVINO_NAME, " --format openvino"),
            "openvino-int8": (runfolder.OPENVINO_INT8_NAME, " --format openvino --quantize int8")}


def export_is_current(run: Path, meta: dict | None) -> bool:
    """True when the export was made from the run's current checkpoint (same sha256)."""
    if not meta:
        return False
    src = meta.get("source_checkpoint") or {}
    ckpt = run / str(src.get("file", ""))
    if not src.get("sha256") or not ckpt.is_file():
        return True  # exported folder shipped without its checkpoint: trust it
    return runfolder.file_sha256(ckpt) == src["sha256"]


def topk_rows(probs: np.ndarray, classes: Sequence[str], topk: int) -> list[list[dict]]:
    """Per image, the ``topk`` classes by probability: ``[{"class", "index", "prob"}, ...]``."""
    k = max(1, min(int(topk), probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        [{"class": classes[j], "index": int(j), "prob": float(p[j])} for j in row]
        for p, row in zip(probs, order)
    ]


class OnnxModel:
    """An exported model run by ONNX Runtime."""

    def __init__(self, path: Path, threads: int):
        self.session = ort_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class OpenVinoModel:
    """An OpenVINO IR export (``model.xml`` / ``model.int8.xml``) run by OpenVINO's CPU runtime."""

    def __init__(self, path: Path, threads: int):
        self.compiled = compile_openvino(path, threads)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return openvino_logits(self.compiled, batch)


class TorchModel:
    """A run's best checkpoint run by PyTorch (channels_last: ~1.7x faster on CPU for MobileNet/EfficientNet)."""

    def __init__(self, run: Path):
        # PyTorch is imported here, for this backend only: the ONNX backends must not load it
        # (3.1 s and ~480 MB of RSS on this machine)
        import torch

        from .checkpoint import load_model

        self.torch = torch
        model, self.meta = load_model(run)
        self.model = model.to(memory_format=torch.channels_last)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return self.model(x).float().numpy()


class Predictor:
    """A loaded model plus its preprocessing; thread-safe for one caller at a time per backend.

    ``backend``: ``"auto"`` (ONNX Runtime when ``RUN/export/model.onnx`` exists and was exported
    from the run's current checkpoint, else PyTorch), ``"onnx"``, ``"int8"``
    (``RUN/export/model.int8.onnx``), ``"openvino"`` / ``"openvino-int8"`` (``model.xml`` /
    ``model.int8.xml``, the ``openvino`` extra) or ``"torch"``. ``batch_size``: images per model call; 8 by
    default: on a CPU larger batches are no faster per image, and ONNX Runtime's working memory
    grows with the batch (MobileNetV2 at 224 px: 185 MB peak for ``transferlab predict`` at 8,
    434 MB at 32, measured).

    Probabilities are calibrated: ``softmax(logits / T)`` with the temperature ``T`` that ``evaluate``
    fitted on the run's validation split (``RUN/calibration.json``, for the current checkpoint; 1.0
    when there is none, or with ``calibrate=False``). ``temperature`` holds it. The stored rejection rule
    answers "unknown" below its ``threshold`` (chosen for ``accept_rate`` of the validation photos, its
    own rate unless given; ``reject=False``: never). Without ``RUN/calibration.json`` the export's
    ``model.json`` supplies both (an export folder shipped alone).
    """

    def __init__(self, run: str | Path, backend: str = "auto", *, threads: int | None = None,
                 batch_size: int = 8, calibrate: bool = True, reject: bool = True,
                 accept_rate: float | None = None):
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if accept_rate is not None:
            try:
                accept_rate = ood.check_accept_rate(accept_rate)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        self.run = runfolder.existing_run(run)
        self.threads = int(threads or default_threads())
        self.batch_size = max(1, int(batch_size))
        self.notes: list[str] = []
        export_meta = runfolder.read_export_meta(self.run)
        calibration = None
        if calibrate:
            calibration = runfolder.read_calibration(self.run)
            shipped_alone = not runfolder.calibration_path(self.run).is_file()  # a stale one is not replaced
            if calibration is None and shipped_alone and export_is_current(self.run, export_meta):
                calibration = (export_meta or {}).get("calibration")
        self.temperature = float(calibration["temperature"]) if calibration else 1.0
        self.calibrated_on: str | None = calibration.get("fitted_on", "val") if calibration else None
        rule = (calibration or {}).get("rejection") if reject else None
        self.rejection: dict | None = None
        if rule:
            rate = accept_rate if accept_rate is not None else float(rule["accept_rate"])
            self.rejection = {"score": rule["score"], "accept_rate": rate, "threshold": ood.threshold_for(rule, rate)}
        elif reject and accept_rate is not None:
            raise TransferlabError(f"no 'unknown' threshold for {self.run}: run `transferlab evaluate {self.run}` "
                                   "first (it chooses one on the validation split)")
        onnx_path = runfolder.export_dir(self.run) / runfolder.ONNX_NAME
        if backend == "auto":
            if onnx_path.is_file() and export_is_current(self.run, export_meta):
                backend = "onnx"
            else:
                if onnx_path.is_file():
                    self.notes.append(f"{onnx_path} is older than the run's checkpoint; using PyTorch (re-export to use ONNX Runtime)")
                backend = "torch"
        self.backend = backend
        if backend in EXPORTED:
            name, how = EXPORTED[backend]
            path = runfolder.export_dir(self.run) / name
            if not path.is_file():
                raise TransferlabError(f"no {path.name} in {path.parent}; run `transferlab export {self.run}{how}` first")
            if export_meta is None:
                raise TransferlabError(f"{path.parent / runfolder.EXPORT_META} is missing; re-export the run")
            self.meta, self.model_file = export_meta, path
            self._model: OnnxModel | OpenVinoModel | TorchModel = (
                OpenVinoModel(path, self.threads) if backend.startswith("openvino") else OnnxModel(path, self.threads))
        else:
            self.model_file = runfolder.resolve_checkpoint(self.run)
            torch_model = TorchModel(self.run)
            self._model, self.meta = torch_model, torch_model.meta
        self.classes: list[str] = list(self.meta["classes"])
        self.data_cfg: dict = dict(self.meta["data_cfg"])
        self.preprocess = Preprocess(self.data_cfg)
        # multi-label: sigmoid outputs, each class present at or above its threshold (tuned by evaluate)
        self.multilabel = self.meta.get("task") == "multilabel"
        stored = (calibration or {}).get("thresholds")
        self.thresholds: np.ndarray | None = (
            np.asarray(stored if stored and len(stored) == len(self.classes) else [0.5] * len(self.classes), np.float32)
            if self.multilabel else None)
        if self.multilabel and not stored:
            self.notes.append("no per-class thresholds yet (run `transferlab evaluate` on the run): 0.5 for every label")

    # -- inference ---------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        cfg = self.data_cfg
        return {
            "recipe": self.meta.get("recipe"),
            "classes": self.classes,
            "num_classes": len(self.classes),
            "backend": self.backend,
            "model_file": str(self.model_file),
            "input_size": cfg.get("input_size"),
            "load_size": cfg.get("load_size"),
            "mean": cfg.get("mean"),
            "std": cfg.get("std"),
            "interpolation": cfg.get("interpolation"),
            "resize": cfg.get("resize") or "crop",
            "threads": self.threads,
            "temperature": self.temperature,
            "calibrated_on": self.calibrated_on,
            "rejection": self.rejection,
            "task": "multilabel" if self.multilabel else "single",
            "thresholds": None if self.thresholds is None else [float(t) for t in self.thresholds],
        }

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs for a preprocessed batch ``[B, 3, S, S]`` (one forward pass)."""
        return self._model.logits(np.ascontiguousarray(batch, dtype=np.float32))

    def predict_arrays(self, batch: np.ndarray, tta: bool = False) -> np.ndarray:
        """Calibrated probabilities ``[B, C]`` (``softmax(logits / temperature)``; multi-label: each
        class's ``sigmoid(logit)``) for a preprocessed batch, in chunks of ``batch_size``.

        ``tta``: average with the horizontally flipped images.
        """
        out = []
        for i in range(0, len(batch), self.batch_size):
            chunk = batch[i:i + self.batch_size]
            logits = self.logits(with_mirrors(chunk) if tta else chunk)
            if self.multilabel:
                probs = sigmoid(logits)
            else:
                probs = softmax(logits / np.float32(self.temperature) if self.temperature != 1.0 else logits)
            out.append(average_mirrors(probs) if tta else probs)
        if not out:
            return np.zeros((0, len(self.classes)), np.float32)
        return np.concatenate(out)

    def judge(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, unknown)`` for calibrated probabilities ``[N, C]``: each image's score (its top
        probability) and whether it is below the rejection threshold (all False without one)."""
        scores = ood.max_prob_scores(probs)
        if self.rejection is None:
            return scores, np.zeros(len(scores), bool)
        return scores, scores < self.rejection["threshold"]

    def rows(self, probs: np.ndarray, topk: int) -> list[dict]:
        """Per image ``{"label", "prob", "top", "score", "unknown"}``: the top class, or ``"unknown"``
        when the photo is rejected (its ``top`` still lists the classes). Multi-label: also ``"labels"``,
        the classes at or above their thresholds (``label`` joins them with ``;``, empty for none of
        them; ``prob`` is the highest class probability)."""
        if self.multilabel:
            return self._label_sets(probs, topk)
        scores, unknown = self.judge(probs)
        return [{"label": ood.UNKNOWN if u else top[0]["class"], "prob": top[0]["prob"], "top": top,
                 "score": float(sc), "unknown": bool(u)}
                for top, sc, u in zip(topk_rows(probs, self.classes, topk), scores, unknown)]

    def _label_sets(self, probs: np.ndarray, topk: int) -> list[dict]:
        assert self.thresholds is not None
        rows = []
        for p, top in zip(probs, topk_rows(probs, self.classes, max(topk, 1))):
            order = [i for i in np.argsort(-p, kind="stable") if p[i] >= self.thresholds[i]]
            present = [{"class": self.classes[i], "index": int(i), "prob": float(p[i])} for i in order]
            rows.append({"label": ";".join(self.classes[i] for i in order), "labels": present, "prob": float(p.max()),
                         "top": top, "score": float(p.max()), "unknown": False})
        return rows

    def predict_images(self, images: Iterable, tta: bool = False) -> np.ndarray:
        """Probabilities ``[N, C]`` for decoded PIL images."""
        arrays = [self.preprocess.image(img) for img in images]
        if not arrays:
            return np.zeros((0, len(self.classes)), np.float32)
        return self.predict_arrays(np.stack(arrays), tta=tta)

    def predict_paths(self, paths: Sequence[str | Path] | str | Path, topk: int = 5, tta: bool = False,
                      progress: bool | None = None) -> list[dict]:
        """Classify files, folders (recursive) and globs.

        Returns one dict per path: first ``{"path", "error"}`` for paths that do not exist or globs
        that match nothing, then per file found (in order) ``{"path", "label", "prob", "top":
        [{"class", "index", "prob"}, ...], "score", "unknown"}`` (see :meth:`rows`), or ``{"path",
        "error"}`` when it could not be read.
        """
        files, errors = expand_paths(paths)
        results: dict[str, dict] = {r["path"]: r for r in errors}
        order = [r["path"] for r in errors] + files
        chunks = [files[i:i + self.batch_size] for i in range(0, len(files), self.batch_size)]
        with quiet_pil_warnings(), ThreadPoolExecutor(max_workers=self.threads) as pool:
            for chunk in track(chunks, "predicting", progress=progress):
                loaded = list(pool.map(self.preprocess.try_load, chunk))
                good = [(p, a) for p, a in zip(chunk, loaded) if isinstance(a, np.ndarray)]
                for p, a in zip(chunk, loaded):
                    if not isinstance(a, np.ndarray):
                        results[p] = {"path": p, "error": a}
                if good:
                    probs = self.predict_arrays(np.stack([a for _, a in good]), tta=tta)
                    for (p, _), row in zip(good, self.rows(probs, topk)):
                        results[p] = {"path": p, **row}
        return [results[p] for p in order]


def predict(run: str | Path, paths: Sequence[str | Path] | str | Path, topk: int = 5, tta: bool = False, *,
            backend: str = "auto", batch_size: int = 8, progress: bool | None = None,
            calibrate: bool = True, reject: bool = True, accept_rate: float | None = None) -> list[dict]:
    """Classify image files, folders (recursive) and globs with a run (calibrated probabilities unless
    ``calibrate=False``; "unknown" below the stored threshold unless ``reject=False``); see :class:`Predictor`."""
    predictor = Predictor(run, backend=backend, batch_size=batch_size, calibrate=calibrate, reject=reject,
                          accept_rate=accept_rate)
    return predictor.predict_paths(paths, topk=topk, tta=tta, progress=progress)
