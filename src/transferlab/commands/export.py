"""``transferlab export RUN``: ONNX (dynamic batch, optional int8) or TorchScript, checked against PyTorch.

Writes ``RUN/export/model.onnx`` (or ``model.pt``) and ``RUN/export/model.json`` (preprocessing
metadata and the parity check). An export whose outputs differ from PyTorch's by more than the
tolerance is not written and the command exits with status 2, unless ``--accept-parity-mismatch``.
See :mod:`transferlab.exporter`.
"""
from __future__ import annotations

import argparse

from ..choices import EXPORT_FORMATS, QUANTIZE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run folder (with best.safetensors)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="default onnx")
    parser.add_argument("--quantize", choices=QUANTIZE, default=None,
                        help="also write model.int8.onnx (static, calibrated on training images when the run's "
                             "data is reachable, else dynamic) and report size and accuracy change")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--images", metavar="PATH", nargs="+", default=None,
                        help="images for the parity check when the run's validation data is not reachable")
    parser.add_argument("--accept-parity-mismatch", action="store_true",
                        help="keep an export whose probabilities differ from PyTorch's by more than 1e-4 "
                             "(recorded as accepted in model.json); without it such an export is refused")


def run(args: argparse.Namespace) -> int:
    # stage modules are imported here, not at the top: they load PyTorch (3.1 s), which building the
    # CLI parser (`transferlab --help`) must not pay
    from ..exporter import export

    path = export(args.run, format=args.format, quantize=args.quantize, opset=args.opset, images=args.images,
                  accept_mismatch=args.accept_parity_mismatch)
    print(f"done: {path}")
    return 0
