"""Backbone builders: timm models with ``num_classes=0`` (pooled features) and the TF-padded
MobileNet v1 variant that matches Google's / Keras' released MobileNet v1 weights."""
from __future__ import annotations

import timm
from timm.models.efficientnet import _gen_mobilenet_v1
from torch import nn

from ..errors import WeightsError


def timm_backbone(timm_name: str, input_size: int | None = None, *, pretrained: bool = False, **kwargs) -> nn.Module:
    """``timm.create_model(name, num_classes=0)``: images -> pooled, flattened features."""
    cfg = timm.get_pretrained_cfg(timm_name)
    if input_size and cfg is not None and getattr(cfg, "fixed_input_size", False):
        kwargs.setdefault("img_size", int(input_size))  # e.g. ViTs: position embeddings follow the input size
    model = timm.create_model(timm_name, pretrained=pretrained, num_classes=0, **kwargs)
    return model


def mobilenet_v1_tf(width: float = 1.0, input_size: int | None = None, *, pretrained: bool = False) -> nn.Module:
    """MobileNet v1 with TensorFlow 'same' padding (``_gen_mobilenet_v1(..., pad_type='same')``).

    This is the network of Google's TF / Keras MobileNet v1 releases; their weights (converted to
    timm key names) load into it. There are no hub weights for it: supply a file.
    """
    if pretrained:
        raise WeightsError("timm has no hub weights for the TF-padded MobileNet v1; supply a file")
    model = _gen_mobilenet_v1("mobilenetv1_100", width, pad_type="same", num_classes=0, pretrained=False)
    return model
