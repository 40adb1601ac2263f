"""The model-input config and the evaluation preprocessing in plain NumPy (no PyTorch).

:func:`data_config` is the config shared by data loading, training, export and prediction.
:func:`eval_array` is the evaluation transform on a decoded, resized ``uint8`` image ``[L, L, 3]``
(see :func:`transferlab.data.load_image`): centre crop ``S``, scale to [0, 1], normalise with
mean/std, channels first. It gives the same numbers as ``build_transform(cfg, train=False)``
(torchvision) and is what the ONNX predict/serve path uses, so serving needs no PyTorch.

>>> cfg = data_config(32, mean=0.5, std=0.5, crop_pct=1.0)
>>> eval_array(np.zeros((32, 32, 3), np.uint8), cfg).shape
(3, 32, 32)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..choices import RESIZE_MODES
from ..errors import ConfigError
from .images import resample_filter


def resize_mode(cfg: dict) -> str:
    """A data config's resize mode (``"crop"`` for configs written before there was a choice)."""
    return str(cfg.get("resize") or "crop")


def _triple(name: str, value) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in (value if isinstance(value, Sequence) else [value] * 3))
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be 3 numbers, got {value!r}") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise ConfigError(f"{name} must be 3 numbers (one per RGB channel), got {value!r}")
    return vals


def data_config(input_size: int, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                crop_pct: float = 0.875, interpolation: str = "bilinear", resize: str = "crop") -> dict:
    """The model-input config shared by data loading, training, export and prediction.

    >>> data_config(32, mean=0.5, std=0.5, crop_pct=1.0)["load_size"]
    32
    """
    try:
        input_size = int(input_size)
        crop_pct = float(crop_pct)
    except (TypeError, ValueError):
        raise ConfigError(f"input_size must be an int and crop_pct a number, got {input_size!r}, {crop_pct!r}") from None
    if input_size < 1:
        raise ConfigError(f"input_size must be positive, got {input_size}")
    if not 0.0 < crop_pct <= 1.0:
        raise ConfigError(f"crop_pct must be in (0, 1], got {crop_pct}")
    interpolation = str(interpolation).lower()
    resample_filter(interpolation)  # ConfigError for an unknown name
    if resize not in RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {resize!r}; choose one of: {', '.join(RESIZE_MODES)}")
    std3 = _triple("std", std)
    if any(s <= 0 for s in std3):
        raise ConfigError(f"std must be positive, got {std}")
    return {
        "input_size": input_size,
        "load_size": max(input_size, int(round(input_size / crop_pct))),
        "mean": list(_triple("mean", mean)),
        "std": list(std3),
        "crop_pct": crop_pct,
        "interpolation": interpolation,
        "resize": resize,  # how a photo becomes a load_size square: crop, pad or stretch (resize_image)
    }


def center_crop_box(size: int, crop: int) -> int:
    """The top/left offset torchvision's ``CenterCrop`` uses: ``int(round((size - crop) / 2))``."""
    return int(round((int(size) - int(crop)) / 2.0))


def center_crop(hwc: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size x size`` of an image ``[H, W, C]`` (a view), as torchvision's ``CenterCrop``."""
    size = int(size)
    h, w = hwc.shape[:2]
    if h < size or w < size:
        raise ConfigError(f"image of {w}x{h} is smaller than the input size {size}; resize it to load_size first")
    top, left = center_crop_box(h, size), center_crop_box(w, size)
    return hwc[top:top + size, left:left + size]


def normalize(pixels: np.ndarray, cfg: dict) -> np.ndarray:
    """``uint8 [..., S, S, 3]`` -> ``float32 [..., 3, S, S]``: scale to [0, 1], subtract mean, divide by std.

    Works on one image or a batch with identical numbers (element-wise), so a server can keep
    images waiting for their batch as ``uint8`` (a quarter of the memory) and normalise at once.
    """
    x = pixels.astype(np.float32) * np.float32(1.0 / 255.0)  # as torchvision
    mean = np.asarray(cfg["mean"], dtype=np.float32)
    std = np.asarray(cfg["std"], dtype=np.float32)
    return np.ascontiguousarray(np.moveaxis((x - mean) / std, -1, -3))


def eval_array(hwc: np.ndarray, cfg: dict) -> np.ndarray:
    """``uint8 [L, L, 3]`` -> normalised ``float32 [3, S, S]`` (centre crop, /255, mean/std)."""
    return normalize(center_crop(hwc, int(cfg["input_size"])), cfg)
