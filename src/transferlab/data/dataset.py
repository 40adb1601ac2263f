"""``ImageDataset``: (path, label) samples -> (tensor, label), decoded per item or from the image cache.

>>> from transferlab.data import load_data, data_config, build_transform, ImageDataset
>>> splits = load_data("DATA")                                              # doctest: +SKIP
>>> cfg = data_config(224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
>>> ds = ImageDataset(splits.train, cfg, build_transform(cfg, train=True, augment="light"),
...                   cache_dir=True)                                       # doctest: +SKIP
>>> x, y = ds[0]; x.shape                                                   # doctest: +SKIP
torch.Size([3, 224, 224])
"""
from __future__ import annotations

import logging
import os
import weakref

import numpy as np
import torch
from torch.utils.data import Dataset

from .._rows import RowFile
from ..errors import CacheLimitError, ConfigError
from .cache import CacheHold, resolve_cache_dir, use_cache
from .images import load_image
from .preprocess import resize_mode
from .types import Sample
from .transforms import build_transform

logger = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Images as ``(transform(uint8 [3, L, L]), label)`` pairs, ``L = cfg["load_size"]``.

    ``transform=None`` uses the eval transform ``build_transform(cfg, train=False)``; use
    :meth:`load` for the raw ``uint8`` tensor. With ``cache_dir`` (a folder, or ``True`` for the
    default ``~/.cache/transferlab/images``), every image is decoded and resized once, at
    construction, into a ``uint8`` ``.npy`` array keyed by (file list, mtimes, sizes, ``L``,
    interpolation) -- see :mod:`transferlab.data.cache` -- and items are then read from that file
    a batch at a time (or from RAM with ``in_memory=True``). Without a cache, or when the array
    would exceed the cache's size limit (said once), each item is decoded on access.

    ``soft_targets``: a ``[N, C]`` array (or :class:`~transferlab._rows.RowFile`) of target
    distributions, one row per sample (a teacher's probabilities for ``transferlab distill``): labels
    then come as packed rows, see :func:`soft_target_rows`.
    """

    def __init__(self, samples: list[Sample], cfg: dict, transform=None, cache_dir: str | os.PathLike | bool | None = None,
                 *, workers: int | None = None, progress: bool = True, in_memory: bool = False,
                 soft_targets: np.ndarray | RowFile | None = None):
        try:
            self.load_size = int(cfg["load_size"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError("bad data config: no load_size (build it with transferlab.data.data_config)") from None
        self.samples: list[Sample] = [(str(p), int(y)) for p, y in samples]
        self.cfg = cfg
        self.interpolation = str(cfg.get("interpolation", "bilinear"))
        self.resize = resize_mode(cfg)
        self.transform = build_transform(cfg, train=False) if transform is None else transform
        self.cache_file: str | None = None
        self._array: np.ndarray | None = None
        self._rows: RowFile | None = None
        self._hold: CacheHold | None = None
        self._labels = np.asarray([y for _, y in self.samples], dtype=np.int64)  # batch_targets reads it
        if soft_targets is not None and len(soft_targets) != len(self.samples):
            raise ValueError(f"{len(soft_targets)} soft target rows for {len(self.samples)} images")
        self.soft_targets = soft_targets
        folder = resolve_cache_dir(cache_dir)
        if folder is not None and self.samples:
            try:
                path, self._hold = use_cache([p for p, _ in self.samples], self.load_size, self.interpolation,
                                             resize=self.resize, cache_dir=folder, workers=workers, progress=progress)
                self.cache_file = str(path)
                weakref.finalize(self, self._hold.release)  # no other process evicts it while this dataset lives
            except CacheLimitError as exc:
                logger.warning(f"warning: {exc}; decoding each image when it is used instead")
            if in_memory and self.cache_file is not None:
                self._array = np.load(self.cache_file)

    @property
    def cached(self) -> bool:
        """True when items come from the image cache (no decoding)."""
        return self.cache_file is not None

    @property
    def targets(self) -> list[int]:
        """The labels, in order (handy for class weights and samplers)."""
        return [y for _, y in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def batch_targets(self, index) -> torch.Tensor:
        """The labels of images ``index``: ``int64 [n]``, or with soft targets the packed ``[n, 1 + C]`` rows."""
        index = np.asarray(index, dtype=np.int64)
        labels = torch.from_numpy(self._labels[index])
        if self.soft_targets is None:
            return labels
        soft = self.soft_targets
        return soft_target_rows(labels, soft.take(index) if isinstance(soft, RowFile) else soft[index])

    def cached_images(self, index) -> np.ndarray:
        """The cached ``uint8 [len(index), L, L, 3]`` images ``index`` (any order), read for this call."""
        if self.cache_file is None:
            raise ValueError("this ImageDataset has no image cache (build it with cache_dir)")
        if self._array is not None:
            return self._array[np.asarray(index, dtype=np.int64)]
        if self._rows is None:  # opened lazily so each DataLoader worker opens it itself
            self._rows = RowFile(self.cache_file)
        return self._rows.take(index)

    def load(self, index: int) -> torch.Tensor:
        """The decoded, resized image ``index`` as ``uint8 [3, L, L]`` (before the transform)."""
        if self.cache_file is not None:
            hwc = self.cached_images([index])[0]
        else:
            hwc = load_image(self.samples[index][0], self.load_size, self.interpolation, self.resize)
        return torch.from_numpy(hwc).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        x = self.load(index)
        if self.transform is not None:
            x = self.transform(x)
        if self.soft_targets is not None:
            return x, self.batch_targets([index])[0]
        return x, self.samples[index][1]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_rows"] = None  # re-opened in the receiving process
        state["_hold"] = None  # the creating process holds the array
        return state

    def __repr__(self) -> str:
        where = f"cache={self.cache_file}" if self.cached else "decoded per item"
        return f"ImageDataset({len(self)} images, load_size={self.load_size}, {where})"


def soft_target_rows(labels: torch.Tensor, probs) -> torch.Tensor:
    """Labels packed with per-image target distributions: ``float32 [n, 1 + C]``, column 0 the class
    index, then the ``C`` probabilities (a teacher's, for distillation). The one place that packs them;
    :func:`hard_labels` reads the class back and ``transferlab.training.losses.DistillationLoss`` both.

    >>> soft_target_rows(torch.tensor([1]), np.array([[0.2, 0.8]], np.float32)).tolist()
    [[1.0, 0.20000000298023224, 0.800000011920929]]
    """
    probs = torch.as_tensor(np.asarray(probs, dtype=np.float32))
    return torch.cat([torch.as_tensor(labels).to(torch.float32).view(-1, 1), probs.view(len(probs), -1)], dim=1)


def hard_labels(y: torch.Tensor) -> torch.Tensor:
    """The class indices of a batch's labels: ``y`` itself, or column 0 of packed soft-target rows."""
    return y[:, 0].long() if y.ndim == 2 else y
