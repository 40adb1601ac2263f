"""``create_model``: recipe -> Classifier, with pretrained weights resolved and checked."""
from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import ConfigError, WeightsError
from .classifier import Classifier, make_head, normalize_head
from .freeze import backbone_blocks, backbone_layers, count_params
from .registry import get_recipe
from .weights import build_from_hub, find_weights_file, how_to_supply, load_weights_file, package_weights_file


def _num_features(backbone) -> int:
    n = getattr(backbone, "head_hidden_size", None) or getattr(backbone, "num_features", None)
    if not n:
        raise ConfigError(f"cannot tell the feature size of backbone {type(backbone).__name__}")
    return int(n)


def create_model(name: str, num_classes: int, *, pretrained: bool | None = None, weights: str | os.PathLike | None = None,
                 head: Sequence[int] | None = (), dropout: Sequence[float] | float | None = None,
                 input_size: int | None = None) -> Classifier:
    """Build the recipe ``name`` with a new head for ``num_classes`` classes.

    * ``pretrained=None`` uses the recipe's default (transfer recipes: pretrained; scratch: not).
      Pretrained weights come from, in order: ``weights=PATH``; a file in the ``TRANSFERLAB_WEIGHTS``
      folder; a pip package that ships them (efficientnet_lite0); timm's hub download. None of those
      -> WeightsError (a pretrained recipe never falls back to random init silently).
    * ``head``: hidden dense layer sizes between the pooled features and the classes (ReLU + dropout
      after each). The CNN ladder always has its dense 256 -> 128 (``head`` replaces those sizes).
    * ``dropout``: one float for every hidden layer (or before the final layer when there are
      none), or one per hidden layer; None -> the recipe's default (0.5 for cnn_dropout, else 0).
    * ``input_size``: the square input size (default: the recipe's); it sets ``model.data_cfg``.
    """
    recipe = get_recipe(name)
    try:
        num_classes = int(num_classes)
    except (TypeError, ValueError):
        raise ConfigError(f"num_classes must be an integer, got {num_classes!r}") from None
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    size = int(input_size or recipe.input_size)
    if size < recipe.min_input_size:
        raise ConfigError(f"input_size must be >= {recipe.min_input_size} for '{recipe.name}', got {size}")

    hidden_in = tuple(head or ()) or tuple(recipe.head)
    drop_in = recipe.dropout if dropout is None else dropout
    if not hidden_in and dropout is None:
        drop_in = ()
    hidden, drops = normalize_head(hidden_in, drop_in)

    use_pretrained = recipe.pretrained if pretrained is None else bool(pretrained)
    source = None
    if weights and os.path.isdir(os.path.expanduser(str(weights))):
        found = find_weights_file(recipe.weight_names, folders=os.path.expanduser(str(weights)))
        if found is None:
            raise WeightsError(f"no weights file for '{recipe.name}' in folder {weights}: expected one named "
                               f"{' or '.join(s for s in recipe.weight_names if ':' not in s)} "
                               f"(.safetensors, .pth, .pt, .bin, or NAME-*.pth)")
        source = ("file", str(found))
    elif weights:
        source = ("file", str(weights))
    elif use_pretrained:
        if recipe.kind == "scratch":
            alt = f" (for a pretrained {recipe.timm_name} use timm:{recipe.timm_name})" if recipe.timm_name else ""
            raise ConfigError(f"'{recipe.name}' is a from-scratch recipe with no pretrained weights{alt}; "
                              f"drop pretrained=True or pass weights=PATH")
        found = find_weights_file(recipe.weight_names)
        if found is not None:
            source = ("file", str(found))
        elif recipe.package and (packaged := package_weights_file(recipe.package)) is not None:
            source = ("package", str(packaged))
        elif recipe.hub:
            source = ("hub", None)
        else:
            raise WeightsError(f"no pretrained weights for '{recipe.name}': timm has none to download for it; "
                               f"{how_to_supply(recipe)}")

    if source and source[0] == "hub":
        backbone = build_from_hub(recipe, size)
    else:
        backbone = recipe.builder(size, pretrained=False)
    num_features = _num_features(backbone)
    model = Classifier(backbone, make_head(num_features, num_classes, hidden, drops), recipe=recipe.name,
                       num_classes=num_classes, num_features=num_features, data_cfg=recipe.data_cfg(size),
                       head_hidden=hidden, head_dropout=drops)
    if source is None:
        model.weights_info = {"source": None, "matched": 0}
    elif source[0] == "hub":
        model.weights_info = {"source": f"hub:{recipe.timm_name}", "matched": len(
            [k for k in backbone.state_dict() if not k.endswith("num_batches_tracked")]), "mode": "timm"}
    else:
        try:
            load_weights_file(model, source[1])
        except WeightsError as exc:
            hint = _HINTS.get(recipe.name)
            if hint and hint not in str(exc):
                raise WeightsError(f"{exc}; {hint}") from exc
            raise
    return model


_HINTS = {
    "mobilenet_v1": "Google/Keras MobileNet v1 files (TF 'same' padding) go with recipes mobilenet_v1_tf / mobilenet_v1_025_tf",
    "mobilenet_v1_tf": "a 0.25-width file goes with recipe mobilenet_v1_025_tf; timm's own mobilenetv1_100 weights with mobilenet_v1",
    "mobilenet_v1_025_tf": "a 1.0-width file goes with recipe mobilenet_v1_tf",
}


def describe(model: Classifier) -> dict:
    """A small summary: parameter counts, layers/blocks, freeze policy, data config, weights."""
    return {
        "recipe": model.recipe,
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "params": count_params(model),
        "trainable_params": count_params(model, trainable_only=True),
        "backbone_params": count_params(model.backbone),
        "head_params": count_params(model.head),
        "layers": len(backbone_layers(model.backbone)),
        "blocks": len(backbone_blocks(model.backbone)),
        "freeze": model.freeze_policy,
        "head": list(model.head_hidden),
        "dropout": list(model.head_dropout),
        "data_cfg": dict(model.data_cfg),
        "weights": {k: v for k, v in model.weights_info.items() if k != "ignored"},
    }
