"""Feature caching: what a training phase trains on when the lower part of the network is frozen.

A frozen lower part computes the same function in every epoch, so it runs once:
:func:`phase_inputs` cuts the backbone at the block boundary below its first trainable layer
(:func:`transferlab.models.split_backbone`), passes the training images through the frozen part
(``views`` times when augmentation is on, each pass with the augmentation the images would get in
epoch ``v``) and the validation images once, and hands the loop the trainable top (``head``, or
``upper + head``) with loaders over the cached tensors. Epoch ``e`` reads view ``(e - 1) % views``
(:class:`FeatureViews`, indexed by the ``(epoch, index)`` keys of
:class:`~transferlab.train.sampling.EpochSampler`), so cached and uncached training see the same
samples in the same order and agree within float tolerance. When nothing is frozen, the cache would
not fit in memory (``TRANSFERLAB_FEATURE_CACHE_GB``, default 4) or the backbone cannot be cut, the
loop trains the whole model on images instead.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from .. import _progress
from ..models import split_backbone
from ..models.freeze import backbone_layers
from .distributed import DistInfo
from ..precision import autocast, training_amp
from .loop import to_device
from .sampling import image_batches, train_loader, val_loader

DEFAULT_CACHE_GB = 4.0


class FeatureViews(Dataset):
    """Cached features (one tensor per augmented view) with labels, indexed by ``(epoch, index)``:
    epoch ``e`` reads view ``(e - 1) % len(views)``."""

    def __init__(self, views: Sequence[torch.Tensor], labels: torch.Tensor):
        if not views:
            raise ValueError("FeatureViews needs at least one view")
        self.views = list(views)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        epoch, i = key
        return self.views[(int(epoch) - 1) % len(self.views)][i], self.labels[i]

    def __getitems__(self, keys):  # batched fetch (the DataLoader uses it when present)
        epoch = keys[0][0]
        idx = torch.as_tensor([i for _, i in keys])
        feats, labels = self.views[(int(epoch) - 1) % len(self.views)][idx], self.labels[idx]
        return list(zip(feats.unbind(0), labels.unbind(0)))


@dataclass
class PhaseInputs:
    """What the training loop runs in one phase: ``net`` (the model, or the part above the cached
    features) and its loaders."""

    net: nn.Module
    train_loader: object
    val_loader: object
    cached: bool


@dataclass
class Settings:
    """The training options feature caching needs (from the run's TrainConfig)."""

    batch_size: int
    seed: int
    views: int
    workers: int | None
    amp: str
    augment: str = "none"
    enabled: bool = True


def max_cache_bytes() -> int:
    """The feature cache's memory limit: ``TRANSFERLAB_FEATURE_CACHE_GB`` (default 4) GiB."""
    return int(float(os.environ.get("TRANSFERLAB_FEATURE_CACHE_GB", DEFAULT_CACHE_GB)) * 2**30)


def frozen_part(model) -> tuple[nn.Module | None, nn.Module | None]:
    """``(lower, upper)``: the frozen bottom of the backbone worth caching and the rest of it
    (``upper`` None when the whole backbone is frozen); ``(None, None)`` when nothing can be cached.
    Reads ``model.frozen_layers`` as set by :func:`transferlab.models.apply_freeze`."""
    total = len(backbone_layers(model.backbone))
    n = int(model.frozen_layers)
    if n == 0:
        return None, None
    if n >= total:
        return model.backbone, None
    parts = split_backbone(model, n)
    if parts is None or len(parts[0]) == 0:
        return None, None
    return parts


def phase_inputs(model, datasets: dict, settings: Settings, *, dist: DistInfo, device: torch.device,
                 channels_last: bool, progress: bool, log: Callable[[str], None]) -> PhaseInputs:
    """The net and loaders for a phase whose freezing is already applied to ``model``."""
    lower, upper = frozen_part(model) if settings.enabled else (None, None)
    if lower is not None:
        cached = cache_features(lower, datasets["train"], datasets["val"], settings, dist=dist, device=device,
                                channels_last=channels_last, progress=progress, log=log)
        if cached is not None:
            train_feats, val_feats = cached
            net = model.head if upper is None else nn.Sequential(upper, model.head)
            return PhaseInputs(
                net,
                train_loader(train_feats, batch_size=settings.batch_size, seed=settings.seed, dist=dist,
                             seeded=False, workers=0),
                val_loader(val_feats, batch_size=settings.batch_size, seed=settings.seed, dist=dist, workers=0),
                cached=True)
    return PhaseInputs(
        model,
        train_loader(datasets["train"], batch_size=settings.batch_size, seed=settings.seed, dist=dist, seeded=True,
                     workers=settings.workers, augment=settings.augment),
        val_loader(datasets["val"], batch_size=settings.batch_size, seed=settings.seed, dist=dist,
                   workers=settings.workers),
        cached=False)


def cache_features(lower: nn.Module, train_ds, val_ds, settings: Settings, *, dist: DistInfo, device: torch.device,
                   channels_last: bool, progress: bool, log: Callable[[str], None]
                   ) -> tuple[FeatureViews, TensorDataset] | None:
    """``lower``'s outputs for ``settings.views`` augmented passes over the training images and one
    over the validation images; None (with a message) when they would not fit in memory."""
    # without augmentation every pass would give the same features: one pass, whatever views says
    views = 1 if settings.augment == "none" else int(settings.views)
    x0 = to_device(train_ds[0][0].unsqueeze(0), device, channels_last)
    need = estimate_bytes(lower, x0, len(train_ds) * views + len(val_ds))
    limit = max_cache_bytes()
    if need > limit:
        log(f"feature cache would need {need / 2**30:.1f} GiB (limit TRANSFERLAB_FEATURE_CACHE_GB="
            f"{limit / 2**30:g}); training without it")
        return None
    t0 = time.perf_counter()
    common = dict(lower=lower, settings=settings, dist=dist, device=device, channels_last=channels_last,
                  progress=progress and dist.is_main)
    train_views, labels = [], None
    for v in range(1, views + 1):  # view v = the augmentation images get in epoch v without caching
        feats, labels = _extract_split(train_ds, view=v,
                                       description=f"features {v}/{views}" if views > 1 else "features train", **common)
        train_views.append(feats)
    # validation features in fp32 whatever --amp says: the val_acc and val_loss of every epoch (and so
    # the best checkpoint's) must equal what ``transferlab evaluate`` measures on that checkpoint in fp32
    val_feats, val_labels = _extract_split(val_ds, view=None, description="features val",
                                           **{**common, "settings": dataclasses.replace(settings, amp="none")})
    log(f"cached frozen-backbone features: {views} view(s) of {len(train_ds)} train + {len(val_ds)} val "
        f"images, {tuple(train_views[0].shape[1:])} each, {time.perf_counter() - t0:.1f}s")
    return FeatureViews(train_views, labels), TensorDataset(val_feats, val_labels)


def _extract_split(dataset, *, lower, settings: Settings, view: int | None, description: str, dist: DistInfo,
                   device, channels_last: bool, progress: bool):
    """Features of ``dataset`` (train: augmented as in epoch ``view``); with DDP each rank computes a
    shard and they are all-gathered."""
    mine = range(dist.rank, len(dataset), dist.world_size)
    if view is None:
        loader = val_loader(dataset, batch_size=settings.batch_size, seed=settings.seed, dist=dist,
                            workers=settings.workers)
    else:
        loader = image_batches(dataset, [(view, i) for i in mine], batch_size=settings.batch_size,
                               seed=settings.seed, augment=settings.augment, workers=settings.workers)
    feats, labels = extract(lower, loader, device=device, channels_last=channels_last, amp=settings.amp,
                            description=description, progress=progress)
    if not dist.enabled:
        return feats, labels
    shards: list = [None] * dist.world_size
    torch.distributed.all_gather_object(shards, (feats, labels))
    full_f = torch.empty((len(dataset), *feats.shape[1:]), dtype=feats.dtype)
    full_y = torch.empty((len(dataset),), dtype=labels.dtype)
    for r, (f, y) in enumerate(shards):
        full_f[r::dist.world_size] = f
        full_y[r::dist.world_size] = y
    return full_f, full_y


@torch.no_grad()
def extract(lower: nn.Module, loader, *, device: torch.device, channels_last: bool = False,
            amp: str = "none", description: str = "caching features", progress: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``lower`` (in eval mode) over ``loader``; returns ``(features, labels)`` on the CPU."""
    lower.eval()
    feats, labels = [], []
    for x, y in _progress.track(loader, description, total=len(loader), progress=progress):
        # features are trained on in the precision of training (fp32 unless --amp bf16): bf16 features differ
        # from the fp32 ones the exported model computes by 6-7% (EfficientNet-Lite0, MobileNetV2) to 33%
        # (MobileNet v1 0.25), and a head trained on them loses accuracy in deployment
        with autocast(training_amp(amp), device):
            f = lower(to_device(x, device, channels_last))
        feats.append(f.float().contiguous().cpu())
        labels.append(torch.as_tensor(y).cpu())
    return torch.cat(feats), torch.cat(labels)


def estimate_bytes(lower: nn.Module, sample: torch.Tensor, n_items: int) -> int:
    """Bytes the cache of ``n_items`` feature tensors will take (one forward pass of ``sample``)."""
    with torch.no_grad():
        was = lower.training
        lower.eval()
        f = lower(sample[:1])
        lower.train(was)
    return int(f[0].numel()) * 4 * n_items
