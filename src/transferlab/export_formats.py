"""Export formats beyond ONNX Runtime: OpenVINO IR (Intel CPUs/GPUs/NPUs, ARM boxes) and Core ML (Apple).

Used by :func:`transferlab.exporter.export` (``format="openvino"`` / ``"coreml"``); each converter is an
optional extra (``pip install "transferlab[openvino]"``, ``"transferlab[coreml]"``), imported when
that format is asked for, so the ONNX server and the default install stay lean.

* **OpenVINO**: the run's verified ONNX graph converted by ``openvino.convert_model`` to
  ``export/model.xml`` + ``model.bin`` (fp32 weights, dynamic batch), then checked against PyTorch
  like the ONNX export (OpenVINO's CPU runtime runs here). ``quantize="int8"``: NNCF's post-training
  quantisation (``nncf.quantize``) calibrated on training images -> ``model.int8.xml``, compared
  with PyTorch (top-1 agreement, not a tolerance: int8 changes the numbers by design).
* **Core ML**: the traced PyTorch model converted by ``coremltools`` to an ML program
  (``export/model.mlpackage``, fp32, batch 1-64, input ``input`` ``[B, 3, S, S]`` normalised as
  ``model.json`` says, output ``logits``). Core ML runs only on Apple systems: on Linux the package is
  reloaded and its spec validated (input and output names, shapes and types), not run; said so in
  ``model.json`` (``parity: null``, ``validated``).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import runfolder
from .errors import TransferlabError
from .runtime import compile_openvino, openvino_logits, require, softmax

logger = logging.getLogger(__name__)

OPENVINO_NAME, OPENVINO_INT8_NAME, COREML_NAME = (runfolder.OPENVINO_NAME, runfolder.OPENVINO_INT8_NAME,
                                                  runfolder.COREML_NAME)
COREML_MAX_BATCH = 64


def check_installed(fmt: str) -> None:
    """A one-line error, before any work, when the converter ``fmt`` needs is not installed."""
    if fmt == "coreml":
        with _quiet_coremltools():
            require("coremltools")
    elif fmt == "openvino":
        require("openvino")


def _replace_files(staged: list[Path], dest_dir: Path) -> None:
    """Move the staged files (or folders) into ``dest_dir``, replacing what was there."""
    for src in staged:
        dest = dest_dir / src.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(src, dest)


# -- OpenVINO ---------------------------------------------------------------------------------------
def openvino_probs(compiled) -> Callable[[np.ndarray], np.ndarray]:
    """Probabilities from a compiled OpenVINO model for a preprocessed batch ``[B, 3, S, S]``."""
    return lambda x: softmax(openvino_logits(compiled, x))


def export_openvino(onnx_path: Path, out_dir: Path, *, parity: Callable, check: Callable) -> dict[str, Any]:
    """Convert ``onnx_path`` to ``out_dir/model.xml`` (+ ``.bin``); ``parity(fn)`` compares a
    probability function with PyTorch and ``check(name, result, path)`` logs it and refuses a
    mismatch (the files are then not written). Returns the ``model.json`` entry."""
    ov = require("openvino")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staged-") as tmp:
        staged = Path(tmp) / OPENVINO_NAME
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(staged), compress_to_fp16=False)
        entry: dict[str, Any] = {"file": OPENVINO_NAME, "weights": staged.with_suffix(".bin").name,
                                 "size_bytes": staged.stat().st_size + staged.with_suffix(".bin").stat().st_size,
                                 "converter": f"openvino {ov.__version__} convert_model (from {onnx_path.name})",
                                 "seconds": round(time.perf_counter() - t0, 2)}
        entry["parity"] = parity(openvino_probs(compile_openvino(staged)))
        check("OpenVINO", entry["parity"], out_dir / OPENVINO_NAME)
        _replace_files([staged, staged.with_suffix(".bin")], out_dir)
    return entry


def quantize_openvino(fp32: Path, out_dir: Path, calib: list[np.ndarray], reference: np.ndarray,
                      batch: np.ndarray, source: str) -> dict[str, Any]:
    """NNCF post-training int8 quantisation of ``fp32`` (``model.xml``) calibrated on ``calib``
    (preprocessed training images) -> ``model.int8.xml``; the entry records its agreement with PyTorch."""
    ov, nncf = require("openvino"), require("nncf")
    if not calib:
        raise TransferlabError("int8 quantisation for OpenVINO needs training images to calibrate on, and the "
                               "run's data is not reachable")
    t0 = time.perf_counter()
    model = ov.Core().read_model(str(fp32))
    dataset = nncf.Dataset([a[None] for a in calib])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(model, dataset, subset_size=len(calib))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staged-") as tmp:
        staged = Path(tmp) / OPENVINO_INT8_NAME
        ov.save_model(quantized, str(staged), compress_to_fp16=False)
        size = staged.stat().st_size + staged.with_suffix(".bin").stat().st_size
        probs = openvino_probs(compile_openvino(staged))(batch)
        _replace_files([staged, staged.with_suffix(".bin")], out_dir)
    fp32_size = fp32.stat().st_size + fp32.with_suffix(".bin").stat().st_size
    return {"file": OPENVINO_INT8_NAME, "method": f"NNCF post-training quantisation, calibrated on {len(calib)} "
                                                  f"training images", "size_bytes": size,
            "size_ratio": round(size / fp32_size, 3), "seconds": round(time.perf_counter() - t0, 2),
            "vs_pytorch": {"images": source, "max_abs_diff": float(np.abs(probs - reference).max()),
                           "top1_agreement": float((probs.argmax(1) == reference.argmax(1)).mean())}}


# -- Core ML ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_coremltools():
    """coremltools says on Linux, at import, that its Apple runtime is missing (8 log lines), and draws
    progress bars while converting: kept out of the user's terminal (errors still raise)."""
    level = logging.getLogger("coremltools").level
    logging.getLogger("coremltools").setLevel(logging.CRITICAL)  # its failed-route ERROR lines too: we report
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger("coremltools").setLevel(level)


def export_coreml(model: torch.nn.Module, input_size: int, out_dir: Path) -> dict[str, Any]:
    """Convert ``model`` (eval mode) to ``out_dir/model.mlpackage`` and validate the saved package's spec.

    The traced model is converted with a batch range of 1-``COREML_MAX_BATCH``; a model coremltools
    cannot convert that way (timm's EfficientNet-Lite0 with coremltools 9: a shape cast it does not
    handle) goes through ``torch.export`` at batch 1 instead, as phones run it. Neither: TransferlabError."""
    with _quiet_coremltools():
        ct = require("coremltools")
    t0 = time.perf_counter()
    s = int(input_size)
    common = dict(outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
                  compute_precision=ct.precision.FLOAT32, minimum_deployment_target=ct.target.iOS16)
    errors = []
    mlmodel, batch = None, (1, COREML_MAX_BATCH)
    with _quiet_coremltools():
        try:
            traced = torch.jit.trace(model, torch.randn(2, 3, s, s), check_trace=False)
            mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="input", shape=(
                ct.RangeDim(1, COREML_MAX_BATCH, default=1), 3, s, s))], **common)
        except Exception as exc:  # noqa: BLE001 - the other route next; both reasons if it fails too
            errors.append(f"traced: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            batch = (1, 1)
            try:
                program = torch.export.export(model, (torch.randn(1, 3, s, s),)).run_decompositions({})
                mlmodel = ct.convert(program, inputs=[ct.TensorType(name="input", shape=(1, 3, s, s))], **common)
            except Exception as exc2:  # noqa: BLE001 - reported as one line
                errors.append(f"torch.export: {type(exc2).__name__}: {str(exc2).splitlines()[0] if str(exc2) else ''}")
                raise TransferlabError("Core ML conversion failed (" + "; ".join(errors) + ")") from None
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staged-") as tmp:
        staged = Path(tmp) / COREML_NAME
        assert mlmodel is not None, "one of the routes converted it"
        mlmodel.save(str(staged))
        validated = validate_coreml(staged, s, batch)
        size = sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())
        _replace_files([staged], out_dir)
    route = "traced, batch 1-64" if batch[1] > 1 else f"torch.export, batch 1 (the traced route failed: {errors[0]})"
    return {"file": COREML_NAME, "size_bytes": size, "converter": f"coremltools {ct.__version__} (ML program, fp32, "
                                                                   f"iOS 16 / macOS 13 or later; {route})",
            "seconds": round(time.perf_counter() - t0, 2), "parity": None, "validated": validated}


def validate_coreml(path: Path, input_size: int, batch: tuple[int, int] = (1, COREML_MAX_BATCH)) -> str:
    """Reload a saved ``.mlpackage`` without running it (Core ML runs only on Apple systems) and check
    its spec: one input ``input`` ``[batch, 3, S, S]`` float32 (``batch``: its lowest and highest size)
    and one output ``logits``. Returns what was checked; TransferlabError when the spec is not that."""
    with _quiet_coremltools():
        ct = require("coremltools")
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    inputs, outputs = list(spec.description.input), list(spec.description.output)
    problems = []
    if [i.name for i in inputs] != ["input"] or [o.name for o in outputs] != ["logits"]:
        problems.append(f"inputs {[i.name for i in inputs]}, outputs {[o.name for o in outputs]}")
    else:
        arr = inputs[0].type.multiArrayType
        ranges = ([(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges]
                  or [(int(d), int(d)) for d in arr.shape])
        want = [tuple(batch), (3, 3), (input_size, input_size), (input_size, input_size)]
        if ranges != want:
            problems.append(f"input shape ranges {ranges}, expected {want}")
        if arr.dataType != ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32:
            problems.append("input is not float32")
    if problems:
        raise TransferlabError(f"the Core ML package {path.name} is not what was asked: {'; '.join(problems)}")
    b = f"{batch[0]}-{batch[1]}" if batch[1] > batch[0] else str(batch[0])
    return (f"spec checked on {os.uname().sysname} (not run: Core ML runs only on Apple systems): input 'input' "
            f"[{b}, 3, {input_size}, {input_size}] float32, output 'logits', "
            f"ML program with {len(spec.mlProgram.functions)} function(s)")
