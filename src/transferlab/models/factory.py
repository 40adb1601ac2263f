"""``create_model``: recipe -> Classifier, with pretrained weights resolved and checked."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, WeightsError
from .classifier import Classifier, make_head, normalize_head
from .freeze import backbone_blocks, backbone_layers, count_params
from .registry import get_recipe
from .weights import (ENV_VAR, build_from_hub, choose_weights_file, how_to_supply, load_weights_file,
                      package_weights_file, parse_weights)


#: where a recipe's pretrained weights come from (see :func:`weights_source`): a path (or folders) or the hub
WeightsSource = tuple[Literal["file", "folder", "env", "package"], str] | tuple[Literal["hub"], None]


def _num_features(backbone) -> int:
    n = getattr(backbone, "head_hidden_size", None) or getattr(backbone, "num_features", None)
    if not n:
        raise ConfigError(f"cannot tell the feature size of backbone {type(backbone).__name__}")
    return int(n)


def weights_source(recipe, weights: str | os.PathLike | dict | None = None) -> WeightsSource:
    """Where a recipe's pretrained weights come from, in this order: ``weights`` (a file, a folder, or
    ``RECIPE=FILE,...`` naming this recipe), the ``TRANSFERLAB_WEIGHTS`` folder(s), a pip package,
    timm's hub. Returns ``("file", path)``, ``("folder", path)`` or ``("env", folders)`` (a file that
    fits is chosen by its tensors once the model is built, else the package or hub),
    ``("package", path)`` or ``("hub", None)``; a WeightsError when there are none to be had."""
    given = parse_weights(weights, recipe.name)
    if given is not None:
        path = Path(os.path.expanduser(str(given)))
        if path.is_dir():
            return "folder", str(path)
        if not path.is_file():
            raise WeightsError(f"weights for '{recipe.name}' not found: {given}")
        return "file", str(path)
    if recipe.kind == "scratch":
        alt = f" (for a pretrained {recipe.timm_name} use timm:{recipe.timm_name})" if recipe.timm_name else ""
        raise ConfigError(f"'{recipe.name}' is a from-scratch recipe with no pretrained weights{alt}; "
                          f"drop pretrained=True or pass weights=PATH")
    env = os.environ.get(ENV_VAR, "")
    if any(Path(f).expanduser().is_dir() for f in env.split(os.pathsep) if f):
        return "env", env
    return fallback_source(recipe)


def fallback_source(recipe) -> WeightsSource:
    """The weights a recipe gets with no file given: a pip package, else timm's hub."""
    if recipe.package and (packaged := package_weights_file(recipe.package)) is not None:
        return "package", str(packaged)
    if recipe.hub:
        return "hub", None
    raise WeightsError(f"no pretrained weights for '{recipe.name}': timm has none to download for it; "
                       f"{how_to_supply(recipe)}")


def create_model(name: str, num_classes: int, *, pretrained: bool | None = None, weights: str | os.PathLike | None = None,
                 head: Sequence[int] | None = (), dropout: Sequence[float] | float | None = None,
                 input_size: int | None = None, crop_pct: float | None = None, resize: str = "crop") -> Classifier:
    """Build the recipe ``name`` with a new head for ``num_classes`` classes.

    * ``pretrained=None`` uses the recipe's default (transfer recipes: pretrained; scratch: not).
      Pretrained weights come from, in order: ``weights=PATH``; a file in the ``TRANSFERLAB_WEIGHTS``
      folder; a pip package that ships them (efficientnet_lite0); timm's hub download. None of those
      -> WeightsError (a pretrained recipe never falls back to random init silently).
    * ``head``: hidden dense layer sizes between the pooled features and the classes (ReLU + dropout
      after each). The CNN ladder always has its dense 256 -> 128 (``head`` replaces those sizes).
    * ``dropout``: one float for every hidden layer (or before the final layer when there are
      none), or one per hidden layer; None -> the recipe's default (0.5 for cnn_dropout, else 0).
    * ``input_size``: the square input size (default: the recipe's); it sets ``model.data_cfg``,
      with ``crop_pct`` (the fraction of the resized image the centre crop keeps; default the recipe's)
      and ``resize`` (how a photo becomes square: ``crop``, ``pad`` or ``stretch``; see
      :func:`transferlab.data.images.resize_image`).
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
    given = parse_weights(weights, recipe.name)
    if recipe.kind == "scratch" and given is not None and os.path.isdir(os.path.expanduser(str(given))):
        given = None  # a folder of pretrained weights is for the transfer recipes (e.g. compare --weights DIR)
    source = weights_source(recipe, given) if (given is not None or use_pretrained) else None
    model, chosen, folder_note = None, None, None
    if source and source[0] in ("folder", "env"):  # choose a file by content: needs the built backbone
        model = _build(recipe, size, num_classes, hidden, drops, crop_pct, resize, hub=False)
        path, why = choose_weights_file(model, recipe, source[1])
        if path is not None:
            source, chosen = ("file", str(path)), why
        else:
            folder_note = why  # said when the fallback fails too: what the folder held, not only "not found"
            try:
                source, model = fallback_source(recipe), None
            except WeightsError as exc:
                raise WeightsError(f"{exc}; {why}") from None
    if model is None:
        try:
            model = _build(recipe, size, num_classes, hidden, drops, crop_pct, resize, hub=bool(source and source[0] == "hub"))
        except WeightsError as exc:
            raise WeightsError(f"{exc}; {folder_note}" if folder_note else str(exc)) from None

    if source is None:
        model.weights_info = {"source": None, "matched": 0}
    elif source[0] == "hub":
        model.weights_info = {"source": f"hub:{recipe.timm_name}", "matched": len(
            [k for k in model.backbone.state_dict() if not k.endswith("num_batches_tracked")]), "mode": "timm"}
    else:
        try:
            load_weights_file(model, source[1])
        except WeightsError as exc:
            hint = _HINTS.get(recipe.name)
            if hint and hint not in str(exc):
                raise WeightsError(f"{exc}; {hint}") from exc
            raise
        if chosen:
            model.weights_info["chosen"] = chosen
    return model


def _build(recipe, size: int, num_classes: int, hidden, drops, crop_pct, resize: str, *, hub: bool) -> Classifier:
    """The recipe's Classifier with a new head; the backbone from timm's hub download when ``hub``."""
    backbone = build_from_hub(recipe, size) if hub else recipe.builder(size, pretrained=False)
    num_features = _num_features(backbone)
    return Classifier(backbone, make_head(num_features, num_classes, hidden, drops), recipe=recipe.name,
                      num_classes=num_classes, num_features=num_features, data_cfg=recipe.data_cfg(size, crop_pct, resize),
                      head_hidden=hidden, head_dropout=drops)


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
