"""Export a trained run to ONNX (optionally int8-quantised) or TorchScript, with a parity check.

Writes into ``RUN/export/``:

* ``model.onnx``       dynamic batch size, self-contained (no external data file); the
  preprocessing metadata is also stored in the ONNX ``metadata_props`` (key ``"transferlab"``).
* ``model.int8.onnx``  with ``quantize="int8"``: static QDQ quantisation calibrated on training
  images when the run's data is reachable, else dynamic quantisation.
* ``model.pt``         with ``format="torchscript"`` (``torch.jit.trace``).
* ``model.json``       classes, recipe, input size, load size, mean/std, interpolation, the
  checkpoint it came from (sha256), per exported file its size and parity check, and ``calibration``:
  the temperature and "unknown" threshold ``evaluate`` chose (``RUN/calibration.json``; null before),
  which ``predict``/``serve`` apply to an export folder shipped without its run.

After exporting, outputs are compared with PyTorch on real images (the run's validation images
when its data is reachable, else the ``images`` given, else random pixels), at batch sizes N and 1:
the maximum absolute difference of the class probabilities must stay under ``tolerance``. An export
that fails the check is not written (an earlier export and its ``model.json`` stay as they were)
and :class:`ParityError` is raised, unless ``accept_mismatch=True`` (``--accept-parity-mismatch``),
which keeps it with the failed check recorded as accepted in ``model.json``.

>>> import transferlab as tl
>>> path = tl.export("runs/mobilenet_v2")                       # doctest: +SKIP
>>> path = tl.export("runs/mobilenet_v2", quantize="int8")      # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import onnx
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from . import export_formats as formats
from . import runfolder
from ._atomic import atomic_write
from .checkpoint import load_model
from .choices import EXPORT_FORMATS, QUANTIZE
from .data.layout import expand_paths
from .data.preprocess import eval_array
from .data.scan import decode_in_parallel
from .errors import ConfigError, ParityError, TransferlabError  # noqa: F401 - ParityError: raised here
from .runtime import Preprocess, default_threads, ort_probs, ort_session, softmax

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
TOLERANCE = 1e-4
PARITY_IMAGES = 16          # images compared between PyTorch and the export
CALIBRATION_IMAGES = 64     # training images used to calibrate static int8 quantisation
ACCURACY_IMAGES = 1000      # validation images (at most) for the int8 accuracy change


def export(run: str | Path, format: str = "onnx", quantize: str | None = None, *, opset: int = DEFAULT_OPSET,
           images: Sequence[str | Path] | None = None, tolerance: float = TOLERANCE,
           splits=None, accept_mismatch: bool = False, verbose: bool = True) -> Path:
    """Export ``run`` and check the export against PyTorch; returns the exported file's path
    (``model.int8.onnx`` when ``quantize="int8"``).

    The check uses the run's validation images (``splits``: the run's ``DataSplits`` when the caller
    already holds them, else they are loaded from ``RUN/config.json``), or ``images`` when given.
    A failed check raises :class:`ParityError` and writes nothing, unless ``accept_mismatch``."""
    fmt = _checked_request(format, quantize)
    run = Path(run)
    level = logging.INFO if verbose else logging.DEBUG  # what it did, through the transferlab.exporter logger

    model, meta = load_model(run)
    ckpt = runfolder.resolve_checkpoint(run)
    out_dir = runfolder.export_dir(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    pre = Preprocess(meta["data_cfg"])
    splits = splits if splits is not None else run_splits(run)
    batch, source = parity_inputs(pre, splits, images)

    try:
        previous = runfolder.read_export_meta(run)
    except TransferlabError:  # a damaged model.json is rewritten
        previous = None
    info = _base_info(meta, ckpt, previous, runfolder.read_calibration(run))
    exports = info.setdefault("exports", {})
    with _torch_threads():
        with torch.inference_mode():
            reference = softmax(model(torch.from_numpy(batch)).numpy())
        if fmt in ("onnx", "openvino"):  # OpenVINO converts the verified ONNX graph
            path = out_dir / runfolder.ONNX_NAME
            with _staged(path) as staged:
                t0 = time.perf_counter()
                exporter = export_onnx_graph(model, pre.input_size, staged, opset, info)
                entry: dict[str, Any] = {"file": path.name, "size_bytes": staged.stat().st_size, "opset": opset,
                                         "exporter": exporter, "seconds": round(time.perf_counter() - t0, 2)}
                session = ort_session(staged)
                entry["parity"] = parity_check(lambda x: ort_probs(session, x), reference, batch, source, tolerance)
                logger.log(level, f"exported {path} ({_mb(entry['size_bytes'])}, opset {opset}, {exporter} exporter)")
                _check_parity("ONNX Runtime", entry["parity"], path, accept_mismatch, level)
            exports["onnx"] = entry
            if quantize and fmt == "onnx":
                exports["int8"] = _quantize_int8(path, out_dir / runfolder.INT8_NAME, pre, splits, meta, info, batch,
                                                 reference, source, session, level)
                path = out_dir / runfolder.INT8_NAME
            if fmt == "openvino":
                path = _export_openvino(path, out_dir, exports, pre, splits, batch, reference, source, tolerance,
                                        accept_mismatch, quantize, level)
        elif fmt == "coreml":
            exports["coreml"] = entry = formats.export_coreml(model, pre.input_size, out_dir)
            path = out_dir / formats.COREML_NAME
            logger.log(level, f"exported {path} ({_mb(entry['size_bytes'])}); {entry['validated']}")
        else:
            path = out_dir / runfolder.TORCHSCRIPT_NAME
            with _staged(path) as staged:
                t0 = time.perf_counter()
                _export_torchscript(model, pre.input_size, staged)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scripted = torch.jit.load(str(staged), map_location="cpu").eval()

                def ts_probs(x: np.ndarray) -> np.ndarray:
                    with torch.inference_mode():
                        return softmax(scripted(torch.from_numpy(np.ascontiguousarray(x))).numpy())

                entry = {"file": path.name, "size_bytes": staged.stat().st_size, "exporter": "torch.jit.trace",
                         "seconds": round(time.perf_counter() - t0, 2)}
                entry["parity"] = parity_check(ts_probs, reference, batch, source, tolerance)
                logger.log(level, f"exported {path} ({_mb(entry['size_bytes'])}, torch.jit.trace)")
                _check_parity("TorchScript", entry["parity"], path, accept_mismatch, level)
            exports["torchscript"] = entry
    logger.log(level, f"wrote {runfolder.write_export_meta(run, info)}")
    return path


def _checked_request(format: str, quantize: str | None) -> str:
    """The format's name, once the format, the quantisation and the converter it needs are checked."""
    fmt = str(format).lower()
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"unknown quantisation {quantize!r}; the only choice is 'int8'")
    if quantize and fmt not in ("onnx", "openvino"):
        raise ConfigError("--quantize int8 needs --format onnx or openvino")
    formats.check_installed(fmt)  # OpenVINO and Core ML converters are optional extras: said before any work
    return fmt


# -- inputs ------------------------------------------------------------------------------------
def run_splits(run: Path):
    """The run's DataSplits, exactly as training split them (see ``runfolder.load_run_splits``), or None."""
    try:
        return runfolder.load_run_splits(run)[0]
    except TransferlabError:
        return None


def parity_inputs(pre: Preprocess, splits, images) -> tuple[np.ndarray, str]:
    """Up to PARITY_IMAGES preprocessed images: validation split, else given images, else random."""
    arrays: list[np.ndarray] = []
    if splits is not None and splits.val:
        _, arrays = _load_some(pre, [p for p, _ in _spread(splits.val, PARITY_IMAGES)])
        source = "validation images"
    if not arrays and images:
        files, _ = expand_paths(list(images))
        _, arrays = _load_some(pre, files[:PARITY_IMAGES])
        source = "given images"
    if arrays:
        return np.stack(arrays), f"{len(arrays)} {source}"
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (pre.load_size, pre.load_size, 3), dtype=np.uint8) for _ in range(8)]
    return np.stack([eval_array(p, pre.cfg) for p in pixels]), "8 random images (no data reachable)"


def _spread(samples: list, n: int) -> list:
    """n samples spread over the list (which is grouped by class in most layouts)."""
    if len(samples) <= n:
        return list(samples)
    idx = np.linspace(0, len(samples) - 1, n).round().astype(int)
    return [samples[i] for i in idx]


def _calibration_images(pre: Preprocess, splits) -> list[np.ndarray]:
    """Up to CALIBRATION_IMAGES preprocessed training images, spread over the classes, for int8
    calibration (none when the run's data is not reachable)."""
    if splits is None or not splits.train:
        return []
    return _load_some(pre, [p for p, _ in _spread(splits.train, CALIBRATION_IMAGES)])[1]


def _load_some(pre: Preprocess, paths: Sequence[str]) -> tuple[list[int], list[np.ndarray]]:
    """Preprocess ``paths`` in parallel, skipping unreadable files: (indices loaded, their arrays)."""
    keep, arrays = [], []
    with decode_in_parallel(pre.try_load, list(paths), progress=False) as results:
        for i, a in enumerate(results):
            if isinstance(a, np.ndarray):  # else the reason it could not be read
                keep.append(i)
                arrays.append(a)
    return keep, arrays


# -- ONNX --------------------------------------------------------------------------------------
def export_onnx_graph(model, input_size: int, path: Path, opset: int, info: dict) -> str:
    """torch.onnx.export with a dynamic batch axis; the torch.export-based exporter, falling back
    to the TorchScript-based one if it fails. Returns the exporter used."""
    dummy = torch.randn(2, 3, input_size, input_size)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
        tmp_path = Path(tmp) / path.name
        errors = []
        for exporter in ("dynamo", "torchscript"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if exporter == "dynamo":
                        torch.onnx.export(model, (dummy,), str(tmp_path), input_names=["input"],
                                          output_names=["logits"], opset_version=opset, dynamo=True,
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                                          external_data=False, verbose=False, optimize=True)
                    else:
                        torch.onnx.export(model, (dummy,), str(tmp_path), input_names=["input"],
                                          output_names=["logits"], opset_version=opset, dynamo=False,
                                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
                proto = onnx.load(str(tmp_path))
                break
            except Exception as exc:  # noqa: BLE001 - try the other exporter, report both if both fail
                errors.append(f"{exporter}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        else:
            raise TransferlabError(f"ONNX export of {info['recipe']!r} failed: " + "; ".join(errors))
        _set_metadata(proto, info)
        onnx.checker.check_model(proto)
        atomic_write(path, lambda t: onnx.save_model(proto, t))
    return exporter


def _set_metadata(proto, info: dict) -> None:
    """Store the preprocessing metadata in the ONNX model's metadata_props."""
    keys = ("recipe", "classes", "input_size", "load_size", "mean", "std", "interpolation", "crop_pct")
    values = {"transferlab": json.dumps({k: info[k] for k in (*keys, "data_cfg")})}
    values.update({k: json.dumps(info[k]) if not isinstance(info[k], str) else info[k] for k in keys})
    del proto.metadata_props[:]
    for k, v in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "transferlab"


def parity_check(fn, reference: np.ndarray, batch: np.ndarray, source: str, tolerance: float) -> dict:
    """Compare fn(batch) with the PyTorch probabilities at batch N and batch 1."""
    probs = fn(batch)
    single = fn(batch[:1])
    diff = float(max(np.abs(probs - reference).max(), np.abs(single - reference[:1]).max()))
    agree = float((probs.argmax(1) == reference.argmax(1)).mean())
    return {"images": source, "batch_sizes": [int(len(batch)), 1], "max_abs_diff": diff,
            "top1_agreement": agree, "tolerance": tolerance, "ok": bool(diff < tolerance)}


def _check_parity(name: str, parity: dict, path: Path, accept: bool, level: int) -> None:
    """Log the parity line; a failed check raises ParityError unless ``accept`` (then it is recorded as accepted)."""
    logger.log(level, _parity_line(name, parity))
    if parity["ok"]:
        return
    if not accept:
        raise ParityError(
            f"parity check failed: {name} differs from PyTorch by {parity['max_abs_diff']:.2e} in probability "
            f"(tolerance {parity['tolerance']:.0e}, top-1 agreement {parity['top1_agreement']:.0%}) on "
            f"{parity['images']}; {path} was not written. Pass --accept-parity-mismatch "
            f"(accept_mismatch=True) to keep it anyway")
    parity["accepted"] = True
    logger.log(level, f"warning: keeping {path.name} although it fails the parity check (--accept-parity-mismatch)")


@contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, moved onto it when the block succeeds (else removed):
    an export that fails its check never replaces the file in place."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".staged-") as tmp:
        staged = Path(tmp) / path.name
        yield staged
        os.replace(staged, path)


def _parity_line(name: str, parity: dict) -> str:
    verdict = "OK" if parity["ok"] else "MISMATCH"
    return (f"parity {verdict}: {name} vs PyTorch on {parity['images']} (batch {parity['batch_sizes'][0]} and 1): "
            f"max |dprob| = {parity['max_abs_diff']:.2e} (tolerance {parity['tolerance']:.0e}), "
            f"top-1 agreement {parity['top1_agreement']:.0%}")


# -- int8 --------------------------------------------------------------------------------------
class _CalibrationReader:
    def __init__(self, name: str, arrays: list[np.ndarray], batch: int = 8):
        self._batches = iter([{name: np.stack(arrays[i:i + batch])} for i in range(0, len(arrays), batch)])

    def get_next(self):
        return next(self._batches, None)


def _quantize_int8(fp32: Path, out: Path, pre: Preprocess, splits, meta: dict, info: dict, batch: np.ndarray,
                   reference: np.ndarray, source: str, fp32_session, level: int) -> dict:
    calib = _calibration_images(pre, splits)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quant-") as tmp:
        src = Path(tmp) / "prep.onnx"
        try:
            quant_pre_process(str(fp32), str(src), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation, not required
            src = fp32
        tmp_out = Path(tmp) / "int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if calib:
                method = f"static QDQ, per-channel, calibrated on {len(calib)} training images"
                quantize_static(str(src), str(tmp_out), _CalibrationReader(fp32_session.get_inputs()[0].name, calib),
                                quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            else:
                method = "dynamic (weights int8; no training images reachable for calibration)"
                quantize_dynamic(str(src), str(tmp_out), weight_type=QuantType.QUInt8)
        proto = onnx.load(str(tmp_out))
        _set_metadata(proto, info)
        atomic_write(out, lambda t: onnx.save_model(proto, t))
    session = ort_session(out)
    entry: dict[str, Any] = {
        "file": out.name, "method": method, "size_bytes": out.stat().st_size,
        "fp32_size_bytes": fp32.stat().st_size, "seconds": round(time.perf_counter() - t0, 2),
    }
    entry["size_ratio"] = round(entry["size_bytes"] / entry["fp32_size_bytes"], 3)
    int8_probs = ort_probs(session, batch)
    entry["vs_pytorch"] = {"images": source, "max_abs_diff": float(np.abs(int8_probs - reference).max()),
                           "top1_agreement": float((int8_probs.argmax(1) == reference.argmax(1)).mean())}
    logger.log(level, f"quantised {out} ({_mb(entry['size_bytes'])} vs {_mb(entry['fp32_size_bytes'])} fp32, "
        f"{entry['size_ratio']:.0%}; {method})")
    if splits is not None and splits.val:
        acc = _val_accuracy(pre, splits, meta["classes"], {"fp32": fp32_session, "int8": session})
        if acc:
            entry["val_accuracy"] = acc
            logger.log(level, f"validation accuracy on {acc['images']} images: fp32 {acc['fp32']:.2%}, int8 {acc['int8']:.2%} "
                f"(change {acc['int8'] - acc['fp32']:+.2%})")
    else:
        logger.log(level, "validation data not reachable: size change only")
    return entry


def _val_accuracy(pre: Preprocess, splits, classes: list[str], sessions: dict) -> dict | None:
    """Accuracy of each ONNX session on (up to ACCURACY_IMAGES of) the validation split."""
    if list(splits.classes) != list(classes):
        return None
    samples = _spread(splits.val, ACCURACY_IMAGES)
    correct = {k: 0 for k in sessions}
    n = 0
    for i in range(0, len(samples), 64):
        chunk = samples[i:i + 64]
        keep, arrays = _load_some(pre, [p for p, _ in chunk])
        if not arrays:
            continue
        x, y = np.stack(arrays), np.asarray([chunk[j][1] for j in keep])
        for k, s in sessions.items():
            correct[k] += int((ort_probs(s, x).argmax(1) == y).sum())
        n += len(y)
    if not n:
        return None
    return {"images": n, **{k: correct[k] / n for k in sessions}}


# -- OpenVINO ----------------------------------------------------------------------------------
def _export_openvino(onnx_path: Path, out_dir: Path, exports: dict, pre: Preprocess, splits, batch: np.ndarray,
                     reference: np.ndarray, source: str, tolerance: float, accept_mismatch: bool,
                     quantize: str | None, level: int) -> Path:
    """``model.xml`` from the ONNX export (and ``model.int8.xml`` with ``quantize``); returns the last written."""
    def parity(fn):
        return parity_check(fn, reference, batch, source, tolerance)

    def check(name, result, path):
        _check_parity(name, result, path, accept_mismatch, level)

    exports["openvino"] = entry = formats.export_openvino(onnx_path, out_dir, parity=parity, check=check)
    path = out_dir / formats.OPENVINO_NAME
    logger.log(level, f"exported {path} + {entry['weights']} ({_mb(entry['size_bytes'])}, {entry['converter']})")
    if quantize:
        calib = _calibration_images(pre, splits)
        exports["openvino_int8"] = q = formats.quantize_openvino(path, out_dir, calib, reference, batch, source)
        path = out_dir / formats.OPENVINO_INT8_NAME
        logger.log(level, f"quantised {path} ({_mb(q['size_bytes'])}, {q['size_ratio']:.0%} of fp32; {q['method']}); "
                          f"top-1 agreement with PyTorch {q['vs_pytorch']['top1_agreement']:.0%}")
    return path


# -- TorchScript -------------------------------------------------------------------------------
def _export_torchscript(model, input_size: int, path: Path) -> None:
    dummy = torch.randn(2, 3, input_size, input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, dummy, check_trace=False)
        atomic_write(path, lambda t: torch.jit.save(traced, t))


# -- helpers -----------------------------------------------------------------------------------
def _base_info(meta: dict, ckpt: Path, existing: dict | None, calibration: dict | None) -> dict:
    """model.json content: preprocessing + provenance + the temperature and "unknown" rule (``calibration``,
    the run's ``calibration.json``); keeps the other formats' entries when the earlier export came from
    the same checkpoint."""
    cfg = dict(meta["data_cfg"])
    sha = runfolder.file_sha256(ckpt)
    info = {
        "format_version": 1,
        "recipe": meta["recipe"],
        "classes": list(meta["classes"]),
        "num_classes": int(meta["num_classes"]),
        "input_size": int(cfg["input_size"]),
        "load_size": int(cfg["load_size"]),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "interpolation": cfg.get("interpolation", "bilinear"),
        "crop_pct": cfg.get("crop_pct"),
        "resize": cfg.get("resize") or "crop",
        "data_cfg": cfg,
        "input": {"name": "input", "shape": ["batch", 3, int(cfg["input_size"]), int(cfg["input_size"])],
                  "dtype": "float32", "layout": "NCHW, RGB, normalised with mean/std"},
        "task": meta.get("task", "single"),
        "output": {"name": "logits", "shape": ["batch", int(meta["num_classes"])],
                   "note": "apply sigmoid; a class is present at or above its threshold (calibration.thresholds)"
                   if meta.get("task") == "multilabel" else "apply softmax"},
        "head": meta.get("head"), "dropout": meta.get("dropout"),
        "epoch": meta.get("epoch"), "metrics": meta.get("metrics"),
        "source_checkpoint": {"file": ckpt.name, "sha256": sha},
        "exports": {},
        "calibration": ({k: calibration[k] for k in ("temperature", "fitted_on", "rejection", "thresholds")
                         if k in calibration} if calibration else None),
    }
    if existing and (existing.get("source_checkpoint") or {}).get("sha256") == sha:
        info["exports"] = dict(existing.get("exports") or {})
    return info


class _torch_threads:
    """Use the process's cores for export work, restoring torch's thread count afterwards."""

    def __enter__(self):
        self._n = torch.get_num_threads()
        torch.set_num_threads(default_threads())

    def __exit__(self, *exc):
        torch.set_num_threads(self._n)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"
