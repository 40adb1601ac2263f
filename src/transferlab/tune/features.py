"""The head space's inputs: the frozen pretrained backbone at each input size, and its features computed
once per (input size, augmentation) and kept in ``OUT/features/`` as ``.npy`` files."""
from __future__ import annotations

import logging
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_write
from ..data import DataSplits, ImageDataset, build_transform
from ..data.dataset import soft_target_rows
from ..errors import ConfigError
from ..models import Classifier, apply_freeze, create_model
from ..training.api import seed_everything
from ..training.config import TrainConfig
from ..training.distributed import DistInfo
from ..training.features import extract, frozen_part
from ..training.sampling import image_batches, val_loader

logger = logging.getLogger("transferlab.tune")

# (train views, train labels, val features, val labels)
Features = tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]


class Backbones:
    """The recipe's model at each input size, frozen, built once (seeded as train seeds it).

    ``base``: the search's shared options (seed, pretrained, weights); ``crops``: the crop at each size.
    """

    def __init__(self, model: str, n_classes: int, base: TrainConfig, crops: dict[int, float | None]):
        self.model, self.n_classes, self.base, self.crops = model, n_classes, base, crops
        self._models: dict[int, Classifier] = {}

    def __call__(self, size: int) -> Classifier:
        if size not in self._models:
            seed_everything(self.base.seed)  # as train: a backbone without pretrained weights is seeded
            model = create_model(self.model, self.n_classes, pretrained=self.base.pretrained,
                                 weights=self.base.weights, input_size=size, crop_pct=self.crops.get(size))
            apply_freeze(model, "frozen")
            self._models[size] = model
        return self._models[size]


class FeatureCache:
    """The backbone's features of ``splits`` in ``out/features``, read back when the images, the model
    and the options they depend on are the same.

    ``seconds``: extraction time per ``"SIZEpx AUGMENT"`` (summary.json's ``feature_seconds``);
    ``spent``: extraction time since the caller last set it to 0 (the current trial's).
    """

    def __init__(self, backbones: Backbones, splits: DataSplits, out: Path, *, batch_size: int, progress: bool):
        self.backbones, self.splits, self.out = backbones, splits, out
        self.model, self.base = backbones.model, backbones.base
        self.batch_size, self.progress = batch_size, progress
        self.seconds: dict[str, float] = {}
        self.spent = 0.0
        self._features: dict[tuple, Features] = {}

    def folder(self, size: int, augment: str, model: Classifier) -> Path:
        """``out/features/MODEL-SIZEpx-AUGMENT-HASH``: the hash of the image files (path, label, size,
        mtime), the model's data config and weights, and the options the features depend on."""
        h = hashlib.sha1()
        stats: list[tuple[str, int, int | None, int | None]] = []
        for split in (self.splits.train, self.splits.val):
            for path, label in split:
                try:
                    st = os.stat(path)
                    stats.append((path, label, st.st_size, st.st_mtime_ns))
                except OSError:
                    stats.append((path, label, None, None))
        info = model.weights_info or {}
        h.update(json.dumps({"files": stats, "model": self.model, "size": size, "data_cfg": model.data_cfg,
                             "augment": augment, "seed": int(self.base.seed), "amp": self.base.amp,
                             "batch": self.batch_size, "weights": [info.get("source"), info.get("matched")]},
                            sort_keys=True, default=str).encode())
        return self.out / "features" / f"{self.model}-{size}px-{augment}-{h.hexdigest()[:12]}"

    def get(self, size: int, augment: str, views: int) -> Features:
        """(train views, train labels, val features, val labels) at ``size``, from OUT/features or computed
        (multi-label: the labels are packed multi-hot rows, see ``transferlab.data.dataset.soft_target_rows``)."""
        key = (size, augment, views)
        if key in self._features:
            return self._features[key]
        model = self.backbones(size)
        folder = self.folder(size, augment, model)
        wanted = [folder / f"train-{v}.npy" for v in range(1, views + 1)] + [folder / "val.npy"]
        missing = [p for p in wanted if not p.is_file()]
        t0 = time.perf_counter()
        if missing:
            self.extract(model, folder, augment, [int(p.stem.split("-")[1]) for p in missing if p.stem != "val"],
                         "val.npy" in {p.name for p in missing})
            seconds = time.perf_counter() - t0
            self.seconds[f"{size}px {augment}"] = round(seconds, 2)
            self.spent += seconds
            logger.info(f"features at {size} px ({augment}, {views} view(s)): {len(self.splits.train)} train + "
                     f"{len(self.splits.val)} val images, {seconds:.1f}s (kept in {folder})")
        load = lambda p: torch.from_numpy(np.array(np.load(p, mmap_mode="r")))  # noqa: E731 - a copy in RAM
        train_views = [load(folder / f"train-{v}.npy") for v in range(1, views + 1)]
        val_x = load(folder / "val.npy")
        train_y = torch.tensor([y for _, y in self.splits.train], dtype=torch.long)
        val_y = torch.tensor([y for _, y in self.splits.val], dtype=torch.long)
        if self.splits.multilabel:  # multi-hot rows packed with the labels, as training's datasets give them
            train_y = soft_target_rows(train_y, self.splits.label_matrix(self.splits.train))
            val_y = soft_target_rows(val_y, self.splits.label_matrix(self.splits.val))
        self._features[key] = (train_views, train_y, val_x, val_y)
        return self._features[key]

    def extract(self, model: Classifier, folder: Path, augment: str, views: list[int], val: bool) -> None:
        """Compute and save the augmented train passes ``views`` (numbered from 1) and, with ``val``, the
        validation features (fp32, unaugmented, as train computes them)."""
        lower, _ = frozen_part(model)
        if lower is None:
            raise ConfigError(f"{self.model}'s backbone cannot be frozen and cached; tune it with --space full")
        device = torch.device("cpu")
        model.to(memory_format=torch.channels_last)
        cfg = model.data_cfg
        if views:
            ds = ImageDataset(self.splits.train, cfg, build_transform(cfg, train=True, augment=augment), True,
                              progress=self.progress)
            for v in views:
                loader = image_batches(ds, [(v, i) for i in range(len(ds))], batch_size=self.batch_size,
                                       seed=int(self.base.seed), augment=augment, workers=None)
                feats, _ = extract(lower, loader, device=device, channels_last=True, amp=self.base.amp,
                                   description=f"features train {v}", progress=self.progress)
                _save_npy(folder / f"train-{v}.npy", feats.numpy())
        if val:
            ds = ImageDataset(self.splits.val, cfg, build_transform(cfg, train=False), True, progress=self.progress)
            loader = val_loader(ds, batch_size=self.batch_size, seed=int(self.base.seed), dist=DistInfo())
            feats, _ = extract(lower, loader, device=device, channels_last=True, amp="none",  # fp32, as train
                               description="features val", progress=self.progress)
            _save_npy(folder / "val.npy", feats.numpy())


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)
