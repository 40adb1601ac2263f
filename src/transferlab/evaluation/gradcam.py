"""Grad-CAM (Selvaraju et al., 2017) with forward/backward hooks on a CNN's last feature map.

The class score's gradient with respect to the last conv layer's feature maps, averaged over
space, weights those maps; their ReLU'd sum, upsampled to the input size and scaled to [0, 1],
shows where the network looked. Transformers (no spatial conv feature map at the end) are not
supported: :func:`find_target_layer` returns ``None`` for them and callers skip with a note.

Example::

    cam = GradCAM(model)                    # hooks find_target_layer(model)
    maps, preds = cam(images)               # images [B,3,H,W] -> maps [B,H,W] in [0,1]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import plots


def is_transformer(model: nn.Module) -> bool:
    """True for attention-based backbones (ViT, Swin, DeiT...), whose last conv is a patch embedding."""
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            return True
        if type(m).__name__.endswith("Attention") and hasattr(m, "qkv"):
            return True
    return False


def _timm_last_stage(root: nn.Module) -> str | None:
    """Qualified name (within ``root``) of a timm model's last feature stage, from its ``feature_info``."""
    for prefix, m in root.named_modules():
        info = getattr(m, "feature_info", None)
        if isinstance(info, list) and info and isinstance(info[-1], dict) and info[-1].get("module"):
            return f"{prefix}.{info[-1]['module']}" if prefix else str(info[-1]["module"])
    return None


def find_target_layer(model: nn.Module) -> nn.Module | None:
    """The layer Grad-CAM hooks: a timm backbone's last feature stage (``feature_info``), or the last
    ``nn.Conv2d`` when that comes after the stage (EfficientNet's ``conv_head``) or there is no
    stage info (the scratch CNNs). ``None`` for transformers and models without convolutions."""
    root = getattr(model, "backbone", None) or model
    if is_transformer(root):
        return None
    names = [name for name, _ in root.named_modules()]
    convs = [name for name, m in root.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    last_conv = convs[-1]
    stage = _timm_last_stage(root)
    if stage is not None and stage in names:
        inside = last_conv.startswith(stage + ".")
        if inside or names.index(last_conv) < names.index(stage):
            return root.get_submodule(stage)
    return root.get_submodule(last_conv)


class GradCAM:
    """Grad-CAM for a classifier ``model`` (images -> logits) on ``target_layer`` (default: last conv)."""

    def __init__(self, model: nn.Module, target_layer: nn.Module | None = None):
        self.model = model
        target = target_layer if target_layer is not None else find_target_layer(model)
        if target is None:
            raise ValueError("Grad-CAM needs a CNN: no convolution layer found (transformer or MLP model)")
        self.target_layer = target
        self._acts: torch.Tensor | None = None
        self._grads: torch.Tensor | None = None

    def _forward_hook(self, module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            return None  # not a spatial feature map: reported after the forward pass
        self._acts = output.detach()

        def save_grad(grad):
            self._grads = grad.detach()

        output.register_hook(save_grad)
        # downstream in-place ops (ReLU(inplace=True)) must not overwrite the hooked tensor
        return output.clone()

    def __call__(self, images: torch.Tensor, target: torch.Tensor | list[int] | None = None):
        """Heat maps ``[B, H, W]`` in [0, 1] for ``target`` classes (default: the predicted ones),
        and the predicted classes ``[B]``."""
        handle = self.target_layer.register_forward_hook(self._forward_hook)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                x = images.detach().clone().requires_grad_(True)  # gradients flow even with frozen weights
                logits = self.model(x)
                preds = logits.argmax(dim=1)
                tgt = preds if target is None else torch.as_tensor(target, device=logits.device).long()
                self.model.zero_grad(set_to_none=True)
                score = logits.gather(1, tgt.view(-1, 1)).sum()
                score.backward()
        finally:
            handle.remove()
            self.model.train(was_training)
        acts, grads = self._acts, self._grads
        if acts is None or grads is None or acts.dim() != 4:
            raise ValueError("the Grad-CAM target layer gave no spatial feature map")
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * acts).sum(dim=1, keepdim=True))
        cam = nn.functional.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo = flat.min(dim=1).values.view(-1, 1, 1)
        hi = flat.max(dim=1).values.view(-1, 1, 1)
        cam = (cam - lo) / (hi - lo).clamp_min(1e-12)
        self.model.zero_grad(set_to_none=True)
        return cam.detach().cpu(), preds.detach().cpu()


def gradcam(model: nn.Module, images: torch.Tensor, target=None, target_layer: nn.Module | None = None):
    """One-call Grad-CAM: ``(maps [B,H,W] in [0,1], predicted classes [B])``."""
    return GradCAM(model, target_layer)(images, target)


def pick_examples(labels, count: int) -> list[int]:
    """Up to ``count`` indices: the first image of each class, then the next ones in order."""
    picked: list[int] = []
    seen: set[int] = set()
    for i, y in enumerate(labels):
        if len(picked) >= count:
            break
        if int(y) not in seen:
            seen.add(int(y))
            picked.append(i)
    for i in range(len(labels)):
        if len(picked) >= count:
            break
        if i not in picked:
            picked.append(i)
    return picked


def denormalise(x, cfg: dict):
    """A normalised ``[3, H, W]`` tensor back to an ``[H, W, 3]`` image in [0, 1] for display."""
    mean = np.asarray(cfg.get("mean", (0.0, 0.0, 0.0)), dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(cfg.get("std", (1.0, 1.0, 1.0)), dtype=np.float32).reshape(3, 1, 1)
    img = x.detach().cpu().numpy() * std + mean
    return np.clip(img.transpose(1, 2, 0), 0.0, 1.0)


def gradcam_plot(model, dataset, labels, classes, cfg, path: Path, count: int) -> str | None:
    """Write gradcam.png for up to ``count`` images (one per class first); returns a note if skipped."""
    layer = find_target_layer(model)
    if layer is None:
        return f"Grad-CAM skipped: {type(getattr(model, 'backbone', model)).__name__} is not a CNN (no last conv layer)"
    picked = pick_examples(labels, count)
    images = torch.stack([dataset[i][0] for i in picked])
    maps, cam_preds = GradCAM(model, layer)(images)
    items = []
    for k, i in enumerate(picked):
        ok = int(cam_preds[k]) == int(labels[i])
        items.append({
            "image": denormalise(images[k], cfg),
            "overlay": maps[k].numpy(),
            "caption": f"true: {classes[int(labels[i])]}\npred: {classes[int(cam_preds[k])]}",
            "color": "darkgreen" if ok else "darkred",
        })
    plots.plot_image_grid(items, path, title="Grad-CAM (predicted class)")
    return None


def label_gradcam_plot(model, dataset, predicted: np.ndarray, probs: np.ndarray, true_names: list[str],
                       classes: list[str], cfg, path: Path, count: int, per_image: int = 3) -> str | None:
    """Multi-label Grad-CAM: for up to ``count`` images (those with the most predicted labels first), one
    heat map per predicted label (at most ``per_image``, most probable first), captioned with the label,
    its probability and the image's true labels. ``predicted``: the multi-hot predictions ``[N, C]``."""
    layer = find_target_layer(model)
    if layer is None:
        return f"Grad-CAM skipped: {type(getattr(model, 'backbone', model)).__name__} is not a CNN (no last conv layer)"
    order = np.argsort(-predicted.sum(1), kind="stable")
    pairs = []  # (image index, class)
    for i in order[:count]:
        shown = [int(c) for c in np.argsort(-probs[i], kind="stable") if predicted[i, c]][:per_image]
        pairs += [(int(i), c) for c in shown]
    if not pairs:
        return "Grad-CAM skipped: no label is predicted on any image"
    images = torch.stack([dataset[i][0] for i, _ in pairs])
    maps, _ = GradCAM(model, layer)(images, target=[c for _, c in pairs])
    items = [{"image": denormalise(images[k], cfg), "overlay": maps[k].numpy(),
              "caption": f"{classes[c]} {probs[i, c]:.2f}\ntrue: {true_names[i] or '(none)'}",
              "color": "darkgreen" if classes[c] in true_names[i].split(";") else "darkred"}
             for k, (i, c) in enumerate(pairs)]
    plots.plot_image_grid(items, path, title="Grad-CAM per predicted label")
    return None
