"""Freeze policies and backbone splitting.

What is a "layer" (for ``unfreeze_from=N`` and ``Classifier.layers()``)
-----------------------------------------------------------------------
As close to Keras' ``model.layers`` as PyTorch allows: the backbone's modules in ``named_modules()``
order, keeping

* every leaf module (no children) except ``nn.Identity`` placeholders: convolutions, linear,
  activations, pooling, dropout, flatten ... (parameter-free ones count, as they do in Keras);
* every normalisation layer as one layer even if it has children (timm's ``BatchNormAct2d``
  carries its activation inside);
* a container that owns parameters directly (e.g. a ViT's ``cls_token``/``pos_embed``) as one
  layer holding just those parameters, listed before its children.

``unfreeze_from=N`` trains layers ``N, N+1, ...`` (negative N counts from the end, like a Python
index) and freezes ``0 .. N-1``. ``unfreeze_last=K`` trains the last K blocks of the backbone: timm's
``group_matcher(coarse=False)`` groups (e.g. one group per EfficientNet/MobileNet block, per ResNet
basic/bottleneck block; the stem is the first group, and timm puts the final conv head into the
last block's group), or for the CNN ladder one group per conv unit (conv[, bn], relu, pool[, dropout]).
The head is always trainable.

Frozen BatchNorm layers stay in eval mode (running statistics untouched) even after
``model.train()``: :class:`~transferlab.models.Classifier` re-sets them in its ``train()``.
"""
from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from ..errors import ConfigError


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, (_NormBase, nn.GroupNorm, nn.LayerNorm))


def _own_tensors(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


def backbone_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of ``module`` in order (see the module docstring for the definition)."""
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def visit(prefix: str, m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        children = list(m.named_children())
        if _is_norm(m) or not children:
            if not isinstance(m, nn.Identity):
                out.append((prefix, m))
            return
        if _own_tensors(m):
            out.append((prefix, m))
        for name, child in children:
            visit(f"{prefix}.{name}" if prefix else name, child)

    visit("", module)
    return out


def layer_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters that belong to one layer (a container layer: only its own ones)."""
    if _is_norm(module) or not any(True for _ in module.children()):
        return list(module.parameters())
    return list(module.parameters(recurse=False))


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def backbone_groups(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's blocks (for ``unfreeze_last``), each as its parameter list, in order."""
    named = dict(backbone.named_parameters())
    matcher = getattr(backbone, "group_matcher", None)
    if callable(matcher):
        from timm.models import group_parameters

        try:
            groups = group_parameters(backbone, matcher(coarse=False))
        except Exception:  # noqa: BLE001 - a model with an odd matcher: fall back below
            groups = None
        if groups:
            return [[named[n] for n in names] for _, names in sorted(groups.items())]
    from .scratch import LadderBackbone

    if isinstance(backbone, LadderBackbone):
        blocks: dict[str, list[nn.Parameter]] = {}
        for name, p in backbone.named_parameters():
            idx = re.search(r"(\d+)", name.split(".")[0])
            blocks.setdefault(idx.group(1) if idx else name, []).append(p)
        return list(blocks.values())
    # generic: one group per top-level child with parameters
    out = []
    for _, child in backbone.named_children():
        ps = list(child.parameters())
        if ps:
            out.append(ps)
    own = list(backbone.parameters(recurse=False))
    return ([own] if own else []) + out


def parse_policy(policy: str | None, unfreeze_from: int | None, unfreeze_last: int | None) -> tuple[str, int | None]:
    """Normalise (policy, n): accepts ``"unfreeze_from=5"`` / ``"unfreeze_last=2"`` strings too."""
    policy = (policy or "full").strip().lower().replace("-", "_")
    m = re.fullmatch(r"(unfreeze_from|unfreeze_last)\s*[=:]\s*(-?\d+)", policy)
    if m:
        policy, n = m.group(1), int(m.group(2))
        return policy, n
    if unfreeze_from is not None and unfreeze_last is not None:
        raise ConfigError("give either unfreeze_from or unfreeze_last, not both")
    if unfreeze_from is not None and policy in ("full", "unfreeze_from"):
        return "unfreeze_from", int(unfreeze_from)
    if unfreeze_last is not None and policy in ("full", "unfreeze_last"):
        return "unfreeze_last", int(unfreeze_last)
    if policy in ("unfreeze_from", "unfreeze_last"):
        raise ConfigError(f"freeze policy '{policy}' needs a number, e.g. {policy}=2")
    if policy not in ("full", "frozen"):
        raise ConfigError(f"unknown freeze policy '{policy}'; use one of full, frozen, unfreeze_from=N, unfreeze_last=K")
    if unfreeze_from is not None or unfreeze_last is not None:
        raise ConfigError(f"freeze policy '{policy}' does not take unfreeze_from/unfreeze_last")
    return policy, None


def apply_freeze(model, policy: str = "full", *, unfreeze_from: int | None = None,
                 unfreeze_last: int | None = None) -> int:
    """Set ``requires_grad`` for a freeze policy and return the number of trainable parameters.

    * ``full``: everything trains.
    * ``frozen``: the whole backbone is frozen (BatchNorm kept in eval mode); only the head trains.
    * ``unfreeze_from=N``: backbone layers ``N..`` (see :func:`backbone_layers`) and the head train.
    * ``unfreeze_last=K``: the last K backbone blocks (see :func:`backbone_groups`) and the head train.
    """
    policy, n = parse_policy(policy, unfreeze_from, unfreeze_last)
    backbone = model.backbone
    for p in model.parameters():
        p.requires_grad_(True)
    frozen_norms: list[str] = []
    layers = backbone_layers(backbone)
    if policy == "frozen":
        backbone.requires_grad_(False)
        frozen_norms = [name for name, m in layers if isinstance(m, _BatchNorm)]
        label = "frozen"
    elif policy == "unfreeze_from":
        total = len(layers)
        at = n + total if n < 0 else n
        if not 0 <= at <= total:
            raise ConfigError(f"unfreeze_from={n} is out of range: the backbone of '{model.recipe}' has {total} layers (0..{total - 1})")
        backbone.requires_grad_(False)
        for _, m in layers[at:]:
            for p in layer_parameters(m):
                p.requires_grad_(True)
        frozen_norms = [name for name, m in layers[:at] if isinstance(m, _BatchNorm)]
        label = f"unfreeze_from={at}"
    elif policy == "unfreeze_last":
        groups = backbone_groups(backbone)
        if not 0 <= n <= len(groups):
            raise ConfigError(f"unfreeze_last={n} is out of range: the backbone of '{model.recipe}' has {len(groups)} blocks")
        backbone.requires_grad_(False)
        for group in groups[len(groups) - n:] if n else []:
            for p in group:
                p.requires_grad_(True)
        label = f"unfreeze_last={n}"
    else:
        label = "full"
    model.frozen_norms = frozen_norms
    model.freeze_policy = label
    model.train(model.training)  # put frozen BatchNorm layers into eval mode now
    return count_params(model, trainable_only=True)


def frozen_batchnorms(model) -> list[nn.Module]:
    """Backbone BatchNorm layers to keep in eval mode: those recorded by apply_freeze and any
    whose parameters are all frozen."""
    names = set(getattr(model, "frozen_norms", ()) or ())
    out = []
    for name, m in model.backbone.named_modules():
        if not isinstance(m, _BatchNorm):
            continue
        params = list(m.parameters())
        if name in names or (params and not any(p.requires_grad for p in params)):
            out.append(m)
    return out


# ---------------------------------------------------------------- split_backbone

class PoolTail(nn.Module):
    """timm's ``forward_head(pre_logits=True)`` for ResNet / EfficientNet: pool, dropout, classifier."""

    def __init__(self, global_pool: nn.Module, drop_rate: float, classifier: nn.Module):
        super().__init__()
        self.global_pool = global_pool
        self.drop_rate = float(drop_rate or 0.0)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate > 0.0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)


def backbone_units(backbone: nn.Module) -> list[nn.Module] | None:
    """The backbone as a list of modules applied in sequence, or None when not known."""
    from .scratch import LadderBackbone

    if isinstance(backbone, LadderBackbone):
        return list(backbone.children())
    try:
        from timm.models.efficientnet import EfficientNet
        from timm.models.resnet import ResNet
    except ImportError:  # pragma: no cover
        return None
    if type(backbone) is EfficientNet:
        units = [backbone.conv_stem, backbone.bn1]
        units += [block for stage in backbone.blocks for block in stage]
        units += [backbone.conv_head, backbone.bn2]
    elif type(backbone) is ResNet:
        units = [backbone.conv1, backbone.bn1, backbone.act1, backbone.maxpool]
        units += [block for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4) for block in layer]
    else:
        return None
    units.append(PoolTail(backbone.global_pool, getattr(backbone, "drop_rate", 0.0),
                          getattr(backbone, backbone.pretrained_cfg.get("classifier", "classifier"), nn.Identity())
                          if hasattr(backbone, "pretrained_cfg") else nn.Identity()))
    return units


def split_backbone(model, at: int) -> tuple[nn.Module, nn.Module] | None:
    """Split the backbone into ``(lower, upper)`` with ``upper(lower(x)) == model.backbone(x)``.

    ``at`` is the first trainable layer index (as for ``unfreeze_from``; negative counts from the
    end; ``len(model.layers())`` means everything frozen). The cut is at the nearest block boundary
    at or below layer ``at``, so ``lower`` holds only layers ``< at`` (frozen, safe to run once and
    cache) and ``upper`` the rest. Blocks are: the CNN ladder's layers; timm EfficientNet-family
    ``conv_stem, bn1, blocks[i][j]..., conv_head, bn2, pool``; timm ResNet ``conv1, bn1, act1,
    maxpool, layerK[j]..., pool``. Other backbones return None. Both parts share the model's modules.
    """
    units = backbone_units(model.backbone)
    if units is None:
        return None
    layers = backbone_layers(model.backbone)
    total = len(layers)
    at = int(at)
    at = at + total if at < 0 else at
    if not 0 <= at <= total:
        raise ConfigError(f"split at layer {at}: the backbone has {total} layers")
    if at == total:
        k = len(units)
    else:
        target = layers[at][1]
        k = None
        for i, unit in enumerate(units):
            if any(m is target for m in unit.modules()):
                k = i
                break
        if k is None:  # pragma: no cover - a layer outside the known units
            return None
    return nn.Sequential(*units[:k]), nn.Sequential(*units[k:])
