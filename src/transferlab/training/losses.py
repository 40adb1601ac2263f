"""Training losses beyond cross-entropy: ``--loss focal``, :class:`MultiLabelLoss` for multi-label
data, and :class:`DistillationLoss` for ``transferlab distill``; what the loop counts as right
(:func:`count_correct`) and its validation loss (:func:`plain_loss_sum`) for both kinds of labels.

:class:`FocalLoss` (Lin et al., 2017) is cross-entropy whose every term ``-q_k log p_k`` is scaled
by ``(1 - p_k) ** gamma``: well-classified examples (``p`` near 1) weigh little, so the rare or
hard ones lead. It takes the same ``weight`` (per class) and ``label_smoothing`` as
``nn.CrossEntropyLoss`` and, with ``gamma = 0``, equals it exactly (the weighted mean divides by
the summed weights of the targets, as torch's does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import hard_labels


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


class DistillationLoss(nn.Module):
    """Knowledge distillation (Hinton et al., 2015) over logits ``[B, C]`` and packed targets
    ``[B, 1 + C]`` (the class, then the teacher's probabilities: ``transferlab.data.dataset.soft_target_rows``):

    ``alpha * T^2 * KL(teacher_T || softmax(logits / T)) + (1 - alpha) * hard(logits, class)``

    where ``teacher_T`` is the teacher's distribution softened by the temperature ``T``
    (``softmax(log p / T)``, which is ``softmax(z / T)`` for a teacher with logits ``z``) and ``hard``
    the run's own criterion (cross-entropy or focal, with its class weights and smoothing). ``T^2``
    keeps the soft term's gradients on the scale of the hard one's. Plain class labels ``[B]`` get
    ``hard`` alone.

    >>> loss = DistillationLoss(temperature=1.0, alpha=1.0)
    >>> y = torch.tensor([[0.0, 0.5, 0.5]])      # class 0, teacher 50/50
    >>> float(loss(torch.zeros(1, 2), y))        # the student already agrees
    0.0
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9, hard: nn.Module | None = None):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"distillation temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {alpha}")
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.hard = hard if hard is not None else nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1:
            return self.hard(logits, target)
        labels, teacher = target[:, 0].long(), target[:, 1:].float()
        t = self.temperature
        soft = F.log_softmax(torch.log(teacher.clamp(min=1e-12)) / t, dim=1)
        student = F.log_softmax(logits.float() / t, dim=1)
        kl = F.kl_div(student, soft, reduction="batchmean", log_target=True) * (t * t)
        if self.alpha >= 1.0:
            return kl
        return self.alpha * kl + (1.0 - self.alpha) * self.hard(logits, labels)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"


class MultiLabelLoss(nn.Module):
    """Multi-label loss over logits ``[B, C]`` and packed multi-hot rows ``[B, 1 + C]`` (column 0 is
    not read; see ``transferlab.data.dataset.soft_target_rows``): binary cross-entropy per class and
    image on the sigmoid outputs, averaged; with ``gamma > 0`` the sigmoid focal loss (Lin et al.,
    2017: each term scaled by ``(1 - p_t) ** gamma``), which lets the rare positive labels lead.
    ``label_smoothing`` pulls the targets towards 1/2.

    >>> y = torch.tensor([[0.0, 1.0, 0.0]])
    >>> bool(torch.isclose(MultiLabelLoss()(torch.tensor([[2.0, -1.0]]), y),
    ...                    F.binary_cross_entropy_with_logits(torch.tensor([[2.0, -1.0]]), y[:, 1:])))
    True
    """

    def __init__(self, gamma: float = 0.0, label_smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma, self.label_smoothing = float(gamma), float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = multilabel_targets(target)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        terms = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")
        if self.gamma:
            p = torch.sigmoid(logits.float())
            p_t = p * t + (1 - p) * (1 - t)
            terms = terms * (1.0 - p_t).pow(self.gamma)
        return terms.mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, label_smoothing={self.label_smoothing}"


def multilabel_targets(y: torch.Tensor) -> torch.Tensor:
    """The multi-hot ``[B, C]`` targets of packed label rows ``[B, 1 + C]``."""
    return y[:, 1:].float()


def count_correct(logits: torch.Tensor, y: torch.Tensor, multilabel: bool = False) -> int:
    """Images whose prediction is right: the top class is the label, or (multi-label) every class's
    sigmoid output is on the right side of 1/2 (subset accuracy)."""
    if multilabel:
        return int(((logits > 0) == (multilabel_targets(y) > 0.5)).all(1).sum())
    return int((logits.argmax(1) == hard_labels(y)).sum())


def plain_loss_sum(logits: torch.Tensor, y: torch.Tensor, multilabel: bool = False) -> float:
    """The validation loss summed over the batch's images, unweighted and unsmoothed: cross-entropy,
    or (multi-label) binary cross-entropy averaged over the classes."""
    if multilabel:
        bce = F.binary_cross_entropy_with_logits(logits, multilabel_targets(y), reduction="sum")
        return float(bce) / logits.shape[1]
    return float(F.cross_entropy(logits, y, reduction="sum"))


@dataclass
class Distillation:
    """What ``transferlab distill`` hands to training: the teacher's probabilities ``[N, C]`` for the
    training images (an array or a :class:`~transferlab._rows.RowFile`, rows in the order of the
    training split), the soft term's ``temperature`` and weight ``alpha`` (see :class:`DistillationLoss`)
    and ``record``, what config.json keeps of it (the teacher, its cache file)."""

    probs: Any
    temperature: float = 4.0
    alpha: float = 0.9
    record: dict[str, Any] = field(default_factory=dict)

    def criterion(self, hard: nn.Module) -> DistillationLoss:
        return DistillationLoss(self.temperature, self.alpha, hard=hard)


def make_criterion(loss: str, *, weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                   gamma: float = 2.0, multilabel: bool = False) -> nn.Module:
    """The training criterion for ``--loss`` (``ce`` or ``focal``); for multi-label data
    :class:`MultiLabelLoss` (binary cross-entropy, sigmoid focal with ``focal``)."""
    if multilabel:
        return MultiLabelLoss(gamma=gamma if loss == "focal" else 0.0, label_smoothing=label_smoothing)
    if loss == "focal":
        return FocalLoss(gamma=gamma, weight=weight, label_smoothing=label_smoothing)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
