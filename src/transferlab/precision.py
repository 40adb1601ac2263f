"""Mixed precision: when bfloat16 autocast is used, for training and for inference.

``amp`` is one of :data:`transferlab.choices.AMP_MODES`:

``auto``   (default) bfloat16 for the data doctor's embeddings where the CPU has native bfloat16
           kernels (AVX512-BF16 or AMX; measured 2.4-3.6x faster than fp32 for EfficientNet-Lite0 on the
           project's machine) or on CUDA: similarities survive the rounding. fp32 for training steps and
           for feature caching, whose features a model is trained on: bf16 features differ from the fp32
           ones the evaluated and exported model computes by 6-7% (EfficientNet-Lite0, MobileNetV2) to 33%
           (MobileNet v1 0.25) relative error, and a head trained on them lost 10 points on held-out photos
           in deployment (0.59 -> 0.49, 24 flower photos, MobileNet v1 0.25).
``bf16``   bfloat16 autocast everywhere (feature caching and training too).
``none``   fp32 everywhere.

>>> with autocast(training_amp("auto"), torch.device("cpu")): pass
"""
from __future__ import annotations

import contextlib

import torch

from .choices import AMP_MODES
from .errors import ConfigError


def check_amp(amp: str | None) -> str:
    amp = "auto" if amp is None else str(amp).lower()
    if amp not in AMP_MODES:
        raise ConfigError(f"unknown --amp {amp!r}: choose from {', '.join(AMP_MODES)}")
    return amp


def bf16_is_native(device: torch.device | str = "cpu") -> bool:
    """True when bfloat16 matmuls/convolutions run natively (CUDA, or a CPU with AVX512-BF16 or AMX)."""
    if torch.device(device).type == "cuda":
        return True
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older build
        return False


def inference_amp(amp: str | None, device: torch.device | str = "cpu") -> str:
    """``bf16`` or ``none`` for inference passes (feature caching, embeddings)."""
    amp = check_amp(amp)
    if amp == "auto":
        return "bf16" if bf16_is_native(device) else "none"
    return amp


def training_amp(amp: str | None) -> str:
    """``bf16`` or ``none`` for training steps."""
    return "bf16" if check_amp(amp) == "bf16" else "none"


def autocast(amp: str, device: torch.device):
    """bf16 autocast for ``amp="bf16"``, else a no-op context."""
    if amp == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
