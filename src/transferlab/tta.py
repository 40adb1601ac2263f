"""Test-time augmentation, one way for every consumer (evaluate, predict, serve): each image and its
mirror image go through the model in one batch, and their probabilities are averaged.

Works on NumPy arrays (the ONNX serving path, which never imports PyTorch) and on PyTorch tensors
alike: images are ``[B, C, H, W]`` (or ``[B, H, W, C]`` with ``width_axis=-2``).

>>> import numpy as np
>>> batch = np.arange(8.0).reshape(1, 1, 2, 4)
>>> both = with_mirrors(batch); both.shape, both[1, 0, 0].tolist()
((2, 1, 2, 4), [3.0, 2.0, 1.0, 0.0])
>>> average_mirrors(np.array([[0.75, 0.25], [0.25, 0.75]])).tolist()
[[0.5, 0.5]]
"""
from __future__ import annotations


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def with_mirrors(batch, width_axis: int = -1):
    """``batch`` followed by its horizontally mirrored copy: ``[2B, ...]``."""
    if _is_torch(batch):
        import torch  # (only reached with a tensor, when PyTorch is loaded already)

        return torch.cat([batch, batch.flip(width_axis)])
    import numpy as np

    return np.concatenate([batch, np.flip(batch, axis=width_axis)])


def average_mirrors(probs):
    """The mean of the probabilities of each image (first half) and its mirror (second half)."""
    n = len(probs) // 2
    return (probs[:n] + probs[n:]) / 2
