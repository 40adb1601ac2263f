"""The :class:`Classifier` module (backbone -> head) and helpers shared by the recipes."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .freeze import backbone_layers, frozen_modules


def normalize_head(head: Sequence[int] | None, dropout: Sequence[float] | float | None) -> tuple[list[int], list[float]]:
    """Validate the head spec: hidden sizes and one dropout per hidden layer.

    ``dropout`` may be a single float (applied after every hidden layer, or before the final
    linear layer when there are no hidden layers) or one float per hidden layer.
    """
    hidden = [int(h) for h in (head or ())]
    if any(h <= 0 for h in hidden):
        raise ConfigError(f"head sizes must be positive integers, got {hidden}")
    if dropout is None:
        drops: list[float] = []
    elif isinstance(dropout, (int, float)):
        drops = [float(dropout)] * max(1, len(hidden)) if float(dropout) > 0 else []
    else:
        drops = [float(d) for d in dropout]
        if hidden and len(drops) not in (0, len(hidden)):
            if len(drops) == 1:
                drops = drops * len(hidden)
            else:
                raise ConfigError(f"dropout needs one value per hidden head layer ({len(hidden)}), got {drops}")
        if not hidden and len(drops) > 1:
            raise ConfigError(f"dropout with no hidden head layers takes one value, got {drops}")
    if any(not 0.0 <= d < 1.0 for d in drops):
        raise ConfigError(f"dropout values must be in [0, 1), got {drops}")
    if drops and all(d == 0.0 for d in drops):
        drops = []
    return hidden, drops


def make_head(num_features: int, num_classes: int, hidden: Sequence[int] = (), dropout: Sequence[float] = ()) -> nn.Sequential:
    """features -> [Linear -> ReLU -> Dropout]* -> Linear(num_classes)."""
    layers: list[nn.Module] = []
    width = num_features
    if hidden:
        drops = list(dropout) or [0.0] * len(hidden)
        for h, d in zip(hidden, drops):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if d > 0:
                layers.append(nn.Dropout(d))
            width = h
    elif dropout and dropout[0] > 0:
        layers.append(nn.Dropout(dropout[0]))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """An image classifier: ``head(backbone(x))``.

    ``backbone`` maps images [B, 3, H, W] to pooled features [B, num_features]; ``head`` maps
    features to logits [B, num_classes]. ``data_cfg`` is the preprocessing the model expects.
    ``train()`` keeps the frozen backbone layers in eval mode (see :func:`transferlab.models.apply_freeze`).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, *, recipe: str, num_classes: int,
                 num_features: int, data_cfg: dict, head_hidden: Sequence[int] = (),
                 head_dropout: Sequence[float] = ()):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.recipe = recipe
        self.num_classes = int(num_classes)
        self.num_features = int(num_features)
        self.data_cfg = dict(data_cfg)
        self.head_hidden = [int(h) for h in head_hidden]
        self.head_dropout = [float(d) for d in head_dropout]
        self.weights_info: dict = {"source": None, "matched": 0}
        self.freeze_policy: str = "full"
        self.frozen_layers: int = 0  # leading backbone layers frozen by apply_freeze (kept in eval mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def layers(self) -> list[tuple[str, nn.Module]]:
        """Backbone layers in the backbone's own order (index them for ``unfreeze_from``).

        See :func:`transferlab.models.freeze.backbone_layers` for what counts as a layer.
        """
        return backbone_layers(self.backbone)

    def train(self, mode: bool = True):
        """``nn.Module.train``, except that frozen backbone layers keep inference behaviour
        (see :func:`transferlab.models.freeze.frozen_modules`)."""
        super().train(mode)
        if mode:
            for module in frozen_modules(self):
                module.eval()
        return self

    def extra_repr(self) -> str:
        return f"recipe={self.recipe!r}, num_classes={self.num_classes}, num_features={self.num_features}"
