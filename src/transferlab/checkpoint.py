"""The checkpoint file format: a model's tensors in safetensors with its metadata.

A checkpoint is one ``.safetensors`` file holding the model's tensors, with the
metadata needed to rebuild the model and preprocess images for it (recipe, class
names, head, input size, mean/std) stored as JSON under the ``"transferlab"`` key
of the safetensors header. Writes are atomic: a temp file in the same folder,
then ``os.replace``, so a killed process never leaves a half-written checkpoint.

Example::

    from transferlab.checkpoint import load_model
    model, meta = load_model("runs/mobilenet_v2")      # best.safetensors, eval mode
    print(meta["classes"], meta["data_cfg"]["input_size"])
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ._atomic import atomic_write, json_default
from .errors import TransferlabError
from .models import create_model
from .runfolder import resolve_checkpoint

META_KEY = "transferlab"


def save_model(path: str | Path, model, meta: dict[str, Any]) -> Path:
    """Save ``model``'s state dict and ``meta`` to a safetensors file, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {META_KEY: json.dumps(meta, default=json_default)}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=header))
    return Path(path)


def read_meta(run_or_path: str | Path, which: str = "best") -> dict[str, Any]:
    """The metadata stored with a checkpoint (no tensors are loaded)."""
    path = resolve_checkpoint(run_or_path, which)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # corrupt or not a safetensors file
        raise TransferlabError(f"cannot read checkpoint {path}: {exc}") from None
    if META_KEY not in header:
        raise TransferlabError(f"{path} is not a transferlab checkpoint (no '{META_KEY}' metadata)")
    return json.loads(header[META_KEY])


def load_model(run_or_path: str | Path, which: str = "best"):
    """Rebuild the model of a run folder (its ``which`` checkpoint) or of a checkpoint file, and load its weights.

    Returns ``(model, meta)`` with the model on the CPU in eval mode.
    """
    path = resolve_checkpoint(run_or_path, which)
    meta = read_meta(path)
    model = create_model(
        meta["recipe"],
        num_classes=meta["num_classes"],
        pretrained=False,
        head=tuple(meta.get("head") or ()),
        dropout=tuple(meta.get("dropout") or ()) or 0.0,
        input_size=meta["data_cfg"]["input_size"],
        crop_pct=meta["data_cfg"].get("crop_pct"),
        resize=meta["data_cfg"].get("resize") or "crop",
    )
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise TransferlabError(
            f"checkpoint {path} does not fit recipe {meta['recipe']!r}: "
            f"{len(missing)} missing and {len(unexpected)} unexpected tensors"
        )
    model.eval()
    return model, meta
