"""The model zoo: named recipes, ``create_model``, pretrained weights, freeze policies.

    >>> from transferlab.models import create_model, apply_freeze
    >>> model = create_model("cnn_base", num_classes=10)            # from scratch, 64 px
    >>> model = create_model("mobilenet_v2", 5, weights="mobilenet_v2-b0353104.pth")  # doctest: +SKIP
    >>> apply_freeze(model, "frozen")                   # -> trainable parameter count   # doctest: +SKIP
"""
from __future__ import annotations

from .classifier import Classifier
from .factory import create_model, describe
from .freeze import apply_freeze, backbone_blocks, backbone_layers, count_params, split_backbone
from .registry import Recipe, get_recipe, list_recipes, register
from .weights import ENV_VAR as WEIGHTS_ENV, load_weights_file, read_state_dict

__all__ = [
    "Classifier", "Recipe", "WEIGHTS_ENV", "apply_freeze", "backbone_blocks", "backbone_layers", "count_params",
    "create_model", "describe", "get_recipe", "list_recipes", "load_weights_file", "read_state_dict", "register",
    "split_backbone",
]
