"""Feature caching for a frozen backbone (or frozen lower part of it).

When the lower part of the network is frozen, it computes the same function in every epoch, so
it runs once: :func:`extract` passes the training images (``views`` times when augmentation is
on, each pass with fresh random augmentation) and the validation images through it, and the
trainable top (``head`` or ``upper + head``) trains on the cached tensors. Epoch ``e`` uses view
``(e - 1) % views`` (:class:`FeatureViews`, indexed by the ``(epoch, index)`` keys of
:class:`~transferlab.train.sampling.EpochSampler`). The batches come from the same sampler as the
images would, so cached and uncached training see the same samples in the same order and agree
within float tolerance.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import _progress
from .loop import autocast, to_device


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


@torch.no_grad()
def extract(lower: nn.Module, loader, *, device: torch.device, channels_last: bool = False,
            amp: str = "none", description: str = "caching features", progress: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``lower`` (in eval mode) over ``loader``; returns ``(features, labels)`` on the CPU."""
    lower.eval()
    feats, labels = [], []
    for x, y in _progress.track(loader, description, total=len(loader), progress=progress):
        with autocast(amp, device):
            f = lower(to_device(x, device, channels_last))
        feats.append(f.float().contiguous().cpu())
        labels.append(torch.as_tensor(y).cpu())
    return torch.cat(feats), torch.cat(labels)


def estimate_bytes(lower: nn.Module, sample: torch.Tensor, n_images: int, views: int) -> int:
    """Bytes the cache of ``n_images * views`` feature tensors will take (one forward of ``sample``)."""
    with torch.no_grad():
        was = lower.training
        lower.eval()
        f = lower(sample[:1])
        lower.train(was)
    return int(f[0].numel()) * 4 * n_images * views
