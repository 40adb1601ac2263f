"""Model input config and torchvision-v2 transforms.

Images are decoded once and resized to ``L x L`` (``L = cfg["load_size"] = round(input_size /
crop_pct)``; shorter side to ``L`` then centre crop) before they are cached; the transforms below
take that ``uint8`` tensor ``[3, L, L]`` and return ``float32 [3, S, S]`` normalised
(``S = cfg["input_size"]``).

Augmentation presets (``augment=``, used only when ``train=True``):

``none``    centre crop ``S`` (same as eval).
``shift``   horizontal flip + a random shift of up to 1/8 of the side (``RandomCrop`` with reflect
            padding), the standard for small photos such as CIFAR-10; centre crop ``S`` first.
``light``   horizontal flip; small rotate / shift / zoom like Keras' ImageDataGenerator
            (``RandomAffine(10 degrees, translate 0.1, scale 0.9-1.1)``); then centre crop ``S``.
``strong``  ``RandomResizedCrop(S, scale=(0.25, 1))`` + flip + ``TrivialAugmentWide`` then
            ``RandomErasing(p=0.25)`` after normalising.

>>> cfg = data_config(224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
>>> cfg["load_size"]
256
>>> import torch
>>> t = build_transform(cfg, train=True, augment="light")
>>> t(torch.zeros(3, 256, 256, dtype=torch.uint8)).shape
torch.Size([3, 224, 224])
"""
from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from ..choices import AUGMENTS
from ..errors import ConfigError
from .preprocess import data_config  # noqa: F401 - part of this module's documented API


# tensor resizing supports these three; the other PIL filters (lanczos, box, hamming) use bicubic
_TV_INTERP = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def check_augment(augment: str) -> str:
    """Validate an augmentation preset name (ConfigError listing the choices)."""
    if augment is None:
        return "none"
    name = str(augment).lower()
    if name not in AUGMENTS:
        raise ConfigError(f"unknown augment {augment!r}; choose one of: {', '.join(AUGMENTS)}")
    return name


def build_transform(cfg: dict, *, train: bool, augment: str = "none") -> v2.Compose:
    """uint8 ``[3, L, L]`` -> normalised float32 ``[3, S, S]``, with optional train-time augmentation.

    ``train=False`` (or ``augment="none"``) is deterministic: centre crop, scale to [0, 1], normalise.
    """
    augment = check_augment(augment)
    try:
        size = int(cfg["input_size"])
        interp = _TV_INTERP.get(str(cfg.get("interpolation", "bilinear")), InterpolationMode.BICUBIC)
        mean, std = list(cfg["mean"]), list(cfg["std"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"bad data config (use transferlab.data.data_config): missing {exc}") from None
    finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)]
    if not train or augment == "none":
        steps = [v2.CenterCrop(size), *finish]
    elif augment == "shift":
        steps = [
            v2.CenterCrop(size),
            v2.RandomHorizontalFlip(),
            v2.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect"),
            *finish,
        ]
    elif augment == "light":
        steps = [
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), interpolation=InterpolationMode.BILINEAR),
            v2.CenterCrop(size),
            *finish,
        ]
    else:  # strong
        steps = [
            v2.RandomResizedCrop(size, scale=(0.25, 1.0), interpolation=interp, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR),
            *finish,
            v2.RandomErasing(p=0.25, value=0),
        ]
    return v2.Compose([v2.ToImage(), *steps, v2.ToPureTensor()])
