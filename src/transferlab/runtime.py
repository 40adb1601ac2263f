"""Inference without PyTorch: ONNX Runtime sessions and the evaluation preprocessing in NumPy.

Shared by ``export`` (its parity check against PyTorch) and ``predict`` / ``serve`` (the ONNX
backends). It imports only NumPy, Pillow (through :mod:`transferlab.data.images`) and ONNX Runtime,
so a server that runs an exported model carries no trainer.

>>> pre = Preprocess({"input_size": 224, "load_size": 256, "mean": [0.5] * 3, "std": [0.5] * 3})
>>> pre.load("cat.jpg").shape                                       # doctest: +SKIP
(3, 224, 224)
>>> session = ort_session("runs/cnn_bn/export/model.onnx")           # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .data.images import load_image, resize_image, to_rgb
from .data.preprocess import center_crop, eval_array, normalize, resize_mode
from .errors import DataError, TransferlabError


def default_threads() -> int:
    """CPU threads for inference: the cores this process may use (at most 8)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function (multi-label outputs), stable for large ``|logits|``."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, np.float64))), np.float32)


class Preprocess:
    """A model's evaluation preprocessing as float32 NumPy arrays ``[3, S, S]``: decode (RGB,
    EXIF-rotated), a ``load_size`` square by the config's resize mode (:func:`load_image`), then
    :func:`~transferlab.data.preprocess.eval_array` -- exactly the pixels evaluation sees."""

    def __init__(self, data_cfg: dict):
        self.cfg = dict(data_cfg)
        self.load_size = int(self.cfg["load_size"])
        self.input_size = int(self.cfg["input_size"])
        self.interpolation = str(self.cfg.get("interpolation", "bilinear"))
        self.resize = resize_mode(self.cfg)

    def load(self, source) -> np.ndarray:
        """A path, bytes or file object -> ``[3, S, S]``; raises DataError ``"<name>: <reason>"``."""
        return eval_array(load_image(source, self.load_size, self.interpolation, self.resize), self.cfg)

    def pixels(self, source) -> np.ndarray:
        """Like :meth:`load`, but stops before normalising: ``uint8 [S, S, 3]`` (a quarter of the
        memory while an image waits for its batch); :meth:`normalize` finishes it."""
        return np.ascontiguousarray(center_crop(load_image(source, self.load_size, self.interpolation, self.resize),
                                                self.input_size))

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """``uint8 [..., S, S, 3]`` from :meth:`pixels` -> ``float32 [..., 3, S, S]``, the numbers :meth:`load` gives."""
        return normalize(pixels, self.cfg)

    def image(self, img) -> np.ndarray:
        """A decoded PIL image -> ``[3, S, S]``, converted to RGB as files are (alpha on white, 16-bit scaled)."""
        hwc = np.array(resize_image(to_rgb(img), self.load_size, self.interpolation, self.resize), dtype=np.uint8)
        return eval_array(hwc, self.cfg)

    def try_load(self, path) -> np.ndarray | str:
        """:meth:`load`, or the short reason the file could not be read."""
        try:
            return self.load(path)
        except DataError as exc:
            msg, name = str(exc), str(path)
            return msg[len(name) + 2:] if msg.startswith(f"{name}: ") else msg


EXTRAS = {"openvino": ("openvino", "openvino"), "nncf": ("nncf", "openvino"), "coremltools": ("coremltools", "coreml")}


def require(module: str):
    """Import an optional package (a converter or runtime of an extra), or a one-line error naming the
    extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package, extra = EXTRAS[module]
        raise TransferlabError(f"this needs {package}: pip install \"transferlab[{extra}]\"") from None


def compile_openvino(path: str | Path, threads: int | None = None):
    """An OpenVINO CPU model for ``path`` (``.xml``), with ``threads`` inference threads. OpenVINO is an
    optional extra, imported here (0.4 s) only for this backend."""
    ov = require("openvino")
    # f32, not the CPU plugin's default: on CPUs with bf16 units it runs fp32 models in bf16, which moved an
    # EfficientNet-Lite0's probabilities by 0.03 and changed 1 top-1 answer in 16 (measured; parity failed)
    config: dict = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        return ov.Core().compile_model(str(path), "CPU", config)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own RuntimeError subclasses
        raise TransferlabError(f"cannot load {path}: {exc}") from None


def openvino_logits(compiled, batch: np.ndarray) -> np.ndarray:
    """A compiled OpenVINO model's output for a preprocessed batch ``[B, 3, S, S]``."""
    return np.asarray(compiled(np.ascontiguousarray(batch, np.float32))[0])


def ort_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session tuned for a few shared cores (no busy-waiting threads)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or default_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # no memory-pattern planning: with batches of varying size (a server's micro-batches) it keeps a
    # plan per shape; off, the arena's peak for MobileNetV2 at 224 px and batches of 1-8 was 160 MB
    # instead of 175 MB at the same speed (measured; bench/README.md). The arena itself stays on:
    # without it glibc's heap grew to 235-260 MB and inference ran 10-30% slower.
    opts.enable_mem_pattern = False
    # no busy-waiting between runs: on a few shared cores, spinning threads starve image decoding,
    # the web server and anything else in the process
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise TransferlabError(f"cannot load {path}: {exc}") from None


def ort_probs(session, batch: np.ndarray) -> np.ndarray:
    """Class probabilities of an ONNX classifier for a preprocessed batch ``[B, 3, S, S]``."""
    logits = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(batch, np.float32)})[0]
    return softmax(logits)
