"""Run-folder files: model checkpoints in safetensors with their metadata.

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
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import TransferlabError

META_KEY = "transferlab"
CHECKPOINT_NAMES = {"best": "best.safetensors", "last": "last.safetensors"}


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then atomically move the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_model(path: str | Path, model, meta: dict[str, Any]) -> Path:
    """Save ``model``'s state dict and ``meta`` to a safetensors file, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {META_KEY: json.dumps(meta, default=_json_default)}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=header))
    return Path(path)


def resolve_checkpoint(run_or_path: str | Path, which: str = "best") -> Path:
    """Find the checkpoint file for a run folder (``best`` falls back to ``last``) or a file path."""
    p = Path(run_or_path)
    if p.is_file():
        return p
    if not p.exists():
        raise TransferlabError(f"run not found: {p}")
    if which not in CHECKPOINT_NAMES:
        raise TransferlabError(f"unknown checkpoint {which!r}: choose from {', '.join(CHECKPOINT_NAMES)}")
    for name in (CHECKPOINT_NAMES[which], *CHECKPOINT_NAMES.values()):
        if (p / name).is_file():
            return p / name
    raise TransferlabError(f"no checkpoint in {p} (expected best.safetensors or last.safetensors); train it first")


def read_meta(run_or_path: str | Path, which: str = "best") -> dict[str, Any]:
    """The metadata stored with a checkpoint (no tensors are loaded)."""
    from safetensors import safe_open

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
    """Rebuild the model of a run (or checkpoint file) and load its weights.

    Returns ``(model, meta)`` with the model on the CPU in eval mode.
    """
    from safetensors.torch import load_file

    from .models import create_model

    path = resolve_checkpoint(run_or_path, which)
    meta = read_meta(path)
    model = create_model(
        meta["recipe"],
        num_classes=meta["num_classes"],
        pretrained=False,
        head=tuple(meta.get("head") or ()),
        dropout=tuple(meta.get("dropout") or ()) or 0.0,
        input_size=meta["data_cfg"]["input_size"],
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


def _json_default(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
