"""Training losses beyond cross-entropy: ``--loss focal``.

:class:`FocalLoss` (Lin et al., 2017) is cross-entropy whose every term ``-q_k log p_k`` is scaled
by ``(1 - p_k) ** gamma``: well-classified examples (``p`` near 1) weigh little, so the rare or
hard ones lead. It takes the same ``weight`` (per class) and ``label_smoothing`` as
``nn.CrossEntropyLoss`` and, with ``gamma = 0``, equals it exactly (the weighted mean divides by
the summed weights of the targets, as torch's does).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Focal loss over logits ``[B, C]`` and class indices ``[B]`` (mean over the batch).

    >>> x, y = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    >>> bool(torch.isclose(FocalLoss(gamma=0.0)(x, y), F.cross_entropy(x, y)))
    True
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {label_smoothing}")
        self.gamma, self.label_smoothing = float(gamma), float(label_smoothing)
        self.weight: torch.Tensor | None
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        n_classes = logp.shape[1]
        # the target distribution: one-hot, smoothed towards uniform as CrossEntropyLoss does
        q = F.one_hot(target, n_classes).to(logp.dtype) * (1.0 - self.label_smoothing) + self.label_smoothing / n_classes
        focal = (1.0 - logp.exp()).clamp(min=0.0).pow(self.gamma) if self.gamma else torch.ones_like(logp)
        terms = -(q * focal * logp)  # [B, C]
        if self.weight is None:
            return terms.sum(1).mean()
        w = self.weight.to(logp.device, logp.dtype)
        # torch's weighted mean: sum_i sum_k w_k t_ik / sum_i w_{y_i}
        return (terms * w).sum() / w[target].sum()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, label_smoothing={self.label_smoothing}"


def make_criterion(loss: str, *, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                   gamma: float = 2.0) -> nn.Module:
    """The training criterion for ``--loss`` (``ce`` or ``focal``)."""
    if loss == "focal":
        return FocalLoss(gamma=gamma, weight=weight, label_smoothing=label_smoothing)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
