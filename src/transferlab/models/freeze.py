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
index) and freezes ``0 .. N-1``.

What is a "block" (for ``unfreeze_last=K`` and for cutting the backbone)
-----------------------------------------------------------------------
A run of consecutive layers that belong together: timm's ``group_matcher(coarse=False)`` groups
(one per EfficientNet/MobileNet block, per ResNet basic/bottleneck block; the stem is the first
block, and timm puts the final conv head into the last block), or for the CNN ladder one per conv
unit (conv[, bn], relu, pool[, dropout]). ``unfreeze_last=K`` trains the last K blocks. The head is
always trainable. :func:`split_backbone` cuts the backbone between two blocks.

Frozen layers keep inference behaviour
--------------------------------------
:func:`apply_freeze` records ``model.frozen_layers``, the number of leading backbone layers that are
frozen. ``Classifier.train()`` keeps those layers, and every BatchNorm whose parameters are all
frozen, in eval mode (running statistics untouched, dropout off): that is the one place where it
happens, whatever part of the model a training loop runs.
"""
from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from timm.models import group_parameters
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import ResNet

from ..choices import FREEZE_POLICIES
from ..errors import ConfigError
from .scratch import LadderBackbone


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


def backbone_blocks(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's blocks (for ``unfreeze_last``), each as its parameter list, in order."""
    named = dict(backbone.named_parameters())
    matcher = getattr(backbone, "group_matcher", None)
    if callable(matcher):
        try:
            groups = group_parameters(backbone, matcher(coarse=False))
        except Exception:  # noqa: BLE001 - a model with an odd matcher: fall back below
            groups = None
        if groups:
            return [[named[n] for n in names] for _, names in sorted(groups.items())]
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


def check_policy(policy: str | None, unfreeze_from: int | None, unfreeze_last: int | None) -> str:
    """The policy name, checked: ``frozen`` or ``full``, where ``full`` may take ``unfreeze_from``
    or ``unfreeze_last`` (not both). Returns ``frozen``, ``full``, ``unfreeze_from`` or ``unfreeze_last``."""
    policy = "full" if policy is None else str(policy)
    if policy not in FREEZE_POLICIES:
        raise ConfigError(f"unknown freeze policy {policy!r}; choose from {', '.join(FREEZE_POLICIES)} "
                          f"(with unfreeze_from=N or unfreeze_last=K for a partly frozen backbone)")
    if unfreeze_from is not None and unfreeze_last is not None:
        raise ConfigError("give either unfreeze_from or unfreeze_last, not both")
    if policy == "frozen":
        if unfreeze_from is not None or unfreeze_last is not None:
            raise ConfigError("freeze policy 'frozen' does not take unfreeze_from/unfreeze_last")
        return "frozen"
    if unfreeze_from is not None:
        return "unfreeze_from"
    if unfreeze_last is not None:
        return "unfreeze_last"
    return "full"


def first_trainable_layer(model, layers: list | None = None) -> int:
    """Index of the first backbone layer with a trainable parameter (``len(layers)`` if none)."""
    layers = backbone_layers(model.backbone) if layers is None else layers
    return next((i for i, (_, m) in enumerate(layers) if any(p.requires_grad for p in layer_parameters(m))),
                len(layers))


def apply_freeze(model, policy: str | None = "full", *, unfreeze_from: int | None = None,
                 unfreeze_last: int | None = None) -> int:
    """Set ``requires_grad`` for a freeze policy and return the number of trainable parameters.

    * ``full`` (or None): everything trains.
    * ``frozen``: the whole backbone is frozen (and kept in eval mode); only the head trains.
    * ``unfreeze_from=N``: backbone layers ``N..`` (see :func:`backbone_layers`) and the head train.
    * ``unfreeze_last=K``: the last K backbone blocks (see :func:`backbone_blocks`) and the head train.

    Out-of-range N or K is a ConfigError naming the backbone's size.
    """
    kind = check_policy(policy, unfreeze_from, unfreeze_last)
    backbone = model.backbone
    layers = backbone_layers(backbone)
    model.requires_grad_(True)
    if kind == "frozen":
        backbone.requires_grad_(False)
        label = "frozen"
    elif unfreeze_from is not None:  # kind "unfreeze_from"
        at = resolve_unfreeze_from(model, unfreeze_from, layers)
        backbone.requires_grad_(False)
        for _, m in layers[at:]:
            for p in layer_parameters(m):
                p.requires_grad_(True)
        label = f"unfreeze_from={at}"
    elif unfreeze_last is not None:  # kind "unfreeze_last"
        blocks = backbone_blocks(backbone)
        n = check_unfreeze_last(model, unfreeze_last, blocks)
        backbone.requires_grad_(False)
        for block in blocks[len(blocks) - n:]:
            for p in block:
                p.requires_grad_(True)
        label = f"unfreeze_last={n}"
    else:
        label = "full"
    model.frozen_layers = len(layers) if kind == "frozen" else first_trainable_layer(model, layers)
    model.freeze_policy = label
    model.train(model.training)  # put the frozen layers into eval mode now
    return count_params(model, trainable_only=True)


def resolve_unfreeze_from(model, n: int, layers: list | None = None) -> int:
    """``unfreeze_from=n`` as a layer index (negative counts from the end); ConfigError if out of range."""
    total = len(backbone_layers(model.backbone) if layers is None else layers)
    at = int(n) + total if int(n) < 0 else int(n)
    if not 0 <= at <= total:
        raise ConfigError(f"unfreeze_from={n} is out of range: the backbone of '{model.recipe}' has {total} layers "
                          f"(0..{total - 1}; see transferlab models --layers {model.recipe})")
    return at


def check_unfreeze_last(model, k: int, blocks: list | None = None) -> int:
    """``unfreeze_last=k`` checked against the backbone's number of blocks."""
    total = len(backbone_blocks(model.backbone) if blocks is None else blocks)
    if not 0 <= int(k) <= total:
        raise ConfigError(f"unfreeze_last={k} is out of range: the backbone of '{model.recipe}' has {total} blocks "
                          f"(see transferlab models --layers {model.recipe})")
    return int(k)


def frozen_modules(model) -> list[nn.Module]:
    """The backbone modules ``Classifier.train()`` keeps in eval mode: the first
    ``model.frozen_layers`` layers and every BatchNorm whose parameters are all frozen."""
    layers = backbone_layers(model.backbone)
    out = [m for _, m in layers[: int(getattr(model, "frozen_layers", 0) or 0)]]
    seen = {id(m) for m in out}
    for m in model.backbone.modules():
        if isinstance(m, _BatchNorm) and id(m) not in seen:
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
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


def backbone_sequence(backbone: nn.Module) -> list[nn.Module] | None:
    """The backbone as its blocks applied one after another (plus the pooling tail), or None when
    that sequence is not known for this architecture."""
    if isinstance(backbone, LadderBackbone):
        return list(backbone.children())
    if type(backbone) is EfficientNet:
        units = [backbone.conv_stem, backbone.bn1]
        units += [block for stage in backbone.blocks for block in stage.children()]
        units += [backbone.conv_head, backbone.bn2]
    elif type(backbone) is ResNet:
        units = [backbone.conv1, backbone.bn1, backbone.act1, backbone.maxpool]
        units += [block for stage in ("layer1", "layer2", "layer3", "layer4")
                  for block in backbone.get_submodule(stage).children()]
    else:
        return None
    cfg = getattr(backbone, "pretrained_cfg", None)  # timm's model config: names the classifier attribute
    units.append(PoolTail(backbone.global_pool, getattr(backbone, "drop_rate", 0.0),
                          getattr(backbone, cfg.get("classifier", "classifier"), nn.Identity())
                          if cfg is not None else nn.Identity()))
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
    units = backbone_sequence(model.backbone)
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
