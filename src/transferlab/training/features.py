"""Feature caching: what a training phase trains on when the lower part of the network is frozen.

A frozen lower part computes the same function in every epoch, so it runs once:
:func:`phase_inputs` cuts the backbone at the block boundary below its first trainable layer
(:func:`transferlab.models.split_backbone`), passes the training images through the frozen part
(``views`` times when augmentation is on, each pass with the augmentation the images would get in
epoch ``v``) and the validation images once, and hands the loop the trainable top (``head``, or
``upper + head``) with loaders over the cached tensors. Epoch ``e`` reads view ``(e - 1) % views``
(:class:`FeatureViews`, indexed by the ``(epoch, index)`` keys of
:class:`~transferlab.training.sampling.EpochSampler`), so cached and uncached training see the same
samples in the same order and agree within float tolerance. The features are written to row files
on disk a batch at a time (:class:`FeatureStore`, removed when the phase ends) and read back a batch
at a time, so memory stays flat whatever the number of images. When nothing is frozen, the disk has
no room (or ``TRANSFERLAB_FEATURE_CACHE_GB``, if set, is exceeded) or the backbone cannot be cut, the
loop trains the whole model on images instead.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import _progress
from .._rows import RowFile, RowWriter
from ..data.cache import default_cache_root
from ..models import split_backbone
from ..models.freeze import backbone_layers
from .distributed import DistInfo
from ..precision import autocast, training_amp
from .loop import to_device
from .sampling import image_batches, train_loader, val_loader

logger = logging.getLogger("transferlab.training")

class FeatureViews(Dataset):
    """Cached features (one array per augmented view: a tensor, or a :class:`~transferlab._rows.RowFile`
    on disk) with labels, indexed by ``(epoch, index)``: epoch ``e`` reads view ``(e - 1) % len(views)``;
    a plain ``index`` reads the first view (validation)."""

    def __init__(self, views: Sequence, labels: torch.Tensor, *, shard_total: int | None = None, targets=None):
        if not views:
            raise ValueError("FeatureViews needs at least one view")
        self.views = list(views)
        self.labels = torch.as_tensor(labels)
        self.shard_total = shard_total  # under DDP: the images of all ranks (see sampling.train_loader)
        # the image dataset whose batch_targets give the labels (soft targets for distillation), else ``labels``
        self.targets = targets if getattr(targets, "soft_targets", None) is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def _rows(self, epoch: int, idx: torch.Tensor) -> torch.Tensor:
        view = self.views[(int(epoch) - 1) % len(self.views)]
        if isinstance(view, RowFile):
            return torch.from_numpy(view.take(idx.numpy()))
        return view[idx]

    def _labels(self, idx: torch.Tensor) -> torch.Tensor:
        return self.labels[idx] if self.targets is None else self.targets.batch_targets(idx.numpy())

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (1, key)
        idx = torch.as_tensor([int(i)])
        return self._rows(epoch, idx)[0], self._labels(idx)[0]

    def __getitems__(self, keys):  # batched fetch (the DataLoader uses it when present)
        epoch = keys[0][0] if isinstance(keys[0], tuple) else 1
        idx = torch.as_tensor([k[1] if isinstance(k, tuple) else k for k in keys], dtype=torch.int64)
        feats, labels = self._rows(epoch, idx), self._labels(idx)
        return list(zip(feats.unbind(0), labels.unbind(0)))


@dataclass
class PhaseInputs:
    """What the training loop runs in one phase: ``net`` (the model, or the part above the cached
    features) and its loaders; :meth:`close` removes the phase's feature files."""

    net: nn.Module
    train_loader: object
    val_loader: object
    cached: bool
    store: FeatureStore | None = None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


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
    sampler: str = "shuffle"  # --sampler: shuffle, or balanced (sampling.BalancedSampler)


def max_cache_bytes(folder: Path) -> int:
    """The disk the feature cache may use: the free space of ``folder``'s disk less 1 GiB, capped by
    ``TRANSFERLAB_FEATURE_CACHE_GB`` when set."""
    free = shutil.disk_usage(folder).free - 2**30
    env = os.environ.get("TRANSFERLAB_FEATURE_CACHE_GB")
    return int(min(free, float(env) * 2**30)) if env else int(free)


def feature_cache_root() -> Path:
    """Where training's feature caches live while a phase runs: ``$TRANSFERLAB_CACHE/train-features``."""
    return default_cache_root() / "train-features"


class FeatureStore:
    """A temporary folder of feature row files for one phase, removed by :meth:`close` (or at exit)."""

    def __init__(self, root: Path | None = None):
        root = Path(root) if root is not None else feature_cache_root()
        root.mkdir(parents=True, exist_ok=True)
        self._dir = tempfile.TemporaryDirectory(dir=root, prefix=f"phase-{os.getpid()}-")
        self.path = Path(self._dir.name)

    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.glob("*.npy"))

    def close(self) -> None:
        self._dir.cleanup()


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
    if parts is None or not list(parts[0].children()):  # no backbone, or the cut is below its first block
        return None, None
    return parts


def phase_inputs(model, datasets: dict, settings: Settings, *, dist: DistInfo, device: torch.device,
                 channels_last: bool, progress: bool) -> PhaseInputs:
    """The net and loaders for a phase whose freezing is already applied to ``model``. Under DDP
    ``datasets`` hold this rank's shard (see ``api.make_datasets``)."""
    lower, upper = frozen_part(model) if settings.enabled else (None, None)
    if lower is not None:
        cached = cache_features(lower, datasets["train"], datasets["val"], settings, dist=dist, device=device,
                                channels_last=channels_last, progress=progress)
        if cached is not None:
            train_feats, val_feats, store = cached
            net = model.head if upper is None else nn.Sequential(upper, model.head)
            return PhaseInputs(
                net,
                train_loader(train_feats, batch_size=settings.batch_size, seed=settings.seed, dist=dist,
                             seeded=False, workers=0, sampler=settings.sampler),
                val_loader(val_feats, batch_size=settings.batch_size, seed=settings.seed, dist=dist, workers=0),
                cached=True, store=store)
    return PhaseInputs(
        model,
        train_loader(datasets["train"], batch_size=settings.batch_size, seed=settings.seed, dist=dist, seeded=True,
                     workers=settings.workers, augment=settings.augment, sampler=settings.sampler),
        val_loader(datasets["val"], batch_size=settings.batch_size, seed=settings.seed, dist=dist,
                   workers=settings.workers),
        cached=False)


def cache_features(lower: nn.Module, train_ds, val_ds, settings: Settings, *, dist: DistInfo, device: torch.device,
                   channels_last: bool, progress: bool, root: Path | None = None
                   ) -> tuple[FeatureViews, FeatureViews, FeatureStore] | None:
    """``lower``'s outputs for ``settings.views`` augmented passes over the training images and one
    over the validation images, written in batches to row files on disk (a :class:`FeatureStore`)
    and read back a batch at a time; None (with a message) when the disk has no room for them."""
    # without augmentation every pass would give the same features: one pass, whatever views says
    views = 1 if settings.augment == "none" else int(settings.views)
    x0 = to_device(train_ds[0][0].unsqueeze(0), device, channels_last)
    row_shape = feature_shape(lower, x0)
    need = int(np.prod(row_shape)) * 4 * (len(train_ds) * views + len(val_ds))
    store = FeatureStore(root)
    limit = max_cache_bytes(store.path)
    if need > limit:
        store.close()
        logger.info(f"feature cache would need {need / 2**30:.1f} GiB of disk, {limit / 2**30:.1f} GiB may be used "
                    f"(free space, or TRANSFERLAB_FEATURE_CACHE_GB); training on images instead")
        return None
    t0 = time.perf_counter()
    split = functools.partial(_extract_split, lower=lower, device=device, channels_last=channels_last,
                              row_shape=row_shape, progress=progress and dist.is_main)
    try:
        # view v = the augmentation images get in epoch v without caching
        extracted = [split(train_ds, settings=settings, view=v, path=store.path / f"train-{v}.npy",
                           description=f"features {v}/{views}" if views > 1 else "features train")
                     for v in range(1, views + 1)]
        # validation features in fp32 whatever --amp says: the val_acc and val_loss of every epoch (and so
        # the best checkpoint's) must equal what ``transferlab evaluate`` measures on that checkpoint in fp32
        val_feats, val_labels = split(val_ds, settings=dataclasses.replace(settings, amp="none"), view=None,
                                      path=store.path / "val.npy", description="features val")
    except BaseException:
        store.close()
        raise
    shards = f" (this rank's shard of {dist.world_size})" if dist.enabled else ""
    logger.info(f"cached frozen-backbone features: {views} view(s) of {len(train_ds)} train + {len(val_ds)} val "
                f"images{shards}, {tuple(row_shape)} each, {store.bytes() / 2**20:,.0f} MiB on disk in {store.path}, "
                f"{time.perf_counter() - t0:.1f}s")
    total = getattr(train_ds, "shard_total", None)
    train_views, labels = [feats for feats, _ in extracted], extracted[-1][1]
    return (FeatureViews(train_views, labels, shard_total=total, targets=train_ds),
            FeatureViews([val_feats], val_labels, targets=val_ds), store)


def _extract_split(dataset, *, lower, settings: Settings, view: int | None, path: Path, description: str,
                   device, channels_last: bool, row_shape, progress: bool) -> tuple[RowFile, torch.Tensor]:
    """Features of ``dataset`` (train: augmented as in epoch ``view``) written to ``path``."""
    if view is None:
        loader = val_loader(dataset, batch_size=settings.batch_size, seed=settings.seed, dist=DistInfo(),
                            workers=settings.workers)
    else:
        loader = image_batches(dataset, [(view, i) for i in range(len(dataset))], batch_size=settings.batch_size,
                               seed=settings.seed, augment=settings.augment, workers=settings.workers)
    with RowWriter(path, n=len(dataset), row_shape=row_shape, dtype=np.float32) as out:
        extract(lower, loader, device=device, channels_last=channels_last, amp=settings.amp,
                description=description, progress=progress, out=out)
    return RowFile(path), torch.as_tensor(dataset.targets, dtype=torch.int64)  # in order: the loaders do not shuffle


@overload
def extract(lower: nn.Module, loader, *, device: torch.device, channels_last: bool = ..., amp: str = ...,
            description: str = ..., progress: bool = ..., out: None = ...) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def extract(lower: nn.Module, loader, *, device: torch.device, channels_last: bool = ..., amp: str = ...,
            description: str = ..., progress: bool = ..., out: RowWriter) -> None: ...


@torch.no_grad()
def extract(lower: nn.Module, loader, *, device: torch.device, channels_last: bool = False,
            amp: str = "none", description: str = "caching features", progress: bool = True,
            out: RowWriter | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Run ``lower`` (in eval mode) over ``loader``. With ``out`` the features are written there a
    batch at a time (and None returned); else ``(features, labels)`` on the CPU."""
    lower.eval()
    feats, labels = [], []
    for x, y in _progress.track(loader, description, total=len(loader), progress=progress):
        # features are trained on in the precision of training (fp32 unless --amp bf16): bf16 features differ
        # from the fp32 ones the exported model computes by 6-7% (EfficientNet-Lite0, MobileNetV2) to 33%
        # (MobileNet v1 0.25), and a head trained on them loses accuracy in deployment
        with autocast(training_amp(amp), device):
            f = lower(to_device(x, device, channels_last))
        f = f.float().contiguous().cpu()
        if out is not None:
            # nothing of a batch outlives it: a small tensor kept per batch (labels, features) pins the
            # top of glibc's heap above the freed batch buffers, and the heap then grows by about one
            # input batch per batch (2 GB over a 10,000-photo pass at 128 px, measured)
            out.write(f.numpy())
        else:
            feats.append(f)
            labels.append(torch.as_tensor(y).cpu())
        del x, f
    if out is not None:
        return None
    return torch.cat(feats), (torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64))


def feature_shape(lower: nn.Module, sample: torch.Tensor) -> tuple[int, ...]:
    """The shape of one feature row (one forward pass of ``sample``)."""
    with torch.no_grad():
        was = lower.training
        lower.eval()
        f = lower(sample[:1])
        lower.train(was)
    return tuple(int(d) for d in f.shape[1:])
