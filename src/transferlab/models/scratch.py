"""The from-scratch CNN ladder: cnn_base -> cnn_aug -> cnn_bn -> cnn_dropout.

The network is the classic notebook one: conv 3x3/6 -> maxpool -> conv 4x4/16 -> maxpool ->
conv 5x5/16 -> maxpool -> flatten -> dense 256 -> dense 128 -> logits (softmax lives in the loss).
Convolutions use 'valid' padding (Keras' default) and 2x2 max pooling, so the flatten size depends
on the input size; it is computed here, and any input size >= 32 works.

The backbone is the conv stack + flatten (a flat ``nn.Sequential``: each child is one layer, as in
Keras' ``model.layers``); the head is dense 256 -> dense 128 -> classes.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..errors import ConfigError

CONVS = ((6, 3), (16, 4), (16, 5))  # (filters, kernel)
HIDDEN = (256, 128)
MIN_INPUT = 32


def ladder_feature_size(input_size: int) -> tuple[int, int]:
    """(spatial size after the conv stack, flatten size) for a square input."""
    s = int(input_size)
    for _, k in CONVS:
        s = (s - k + 1) // 2
        if s < 1:
            break
    if input_size < MIN_INPUT or s < 1:
        raise ConfigError(f"the CNN ladder needs input_size >= {MIN_INPUT}, got {input_size}")
    return s, CONVS[-1][0] * s * s


class LadderBackbone(nn.Sequential):
    """Conv stack + flatten; ``num_features`` is the flatten size."""

    def __init__(self, input_size: int = 64, *, batch_norm: bool = False, dropout: float = 0.0):
        layers: list[tuple[str, nn.Module]] = []
        in_ch = 3
        for i, (filters, k) in enumerate(CONVS, 1):
            layers.append((f"conv{i}", nn.Conv2d(in_ch, filters, k, bias=not batch_norm)))
            if batch_norm:
                layers.append((f"bn{i}", nn.BatchNorm2d(filters)))
            layers.append((f"relu{i}", nn.ReLU(inplace=True)))
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
            if dropout > 0:
                layers.append((f"drop{i}", nn.Dropout(dropout)))
            in_ch = filters
        layers.append(("flatten", nn.Flatten(1)))
        super().__init__(OrderedDict(layers))
        self.input_size = int(input_size)
        _, self.num_features = ladder_feature_size(input_size)


def build_ladder(input_size: int, *, batch_norm: bool = False, dropout: float = 0.0) -> LadderBackbone:
    return LadderBackbone(input_size, batch_norm=batch_norm, dropout=dropout)
