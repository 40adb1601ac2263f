"""Grad-CAM (Selvaraju et al., 2017) with forward/backward hooks on a CNN's last convolution.

The class score's gradient with respect to the last conv layer's feature maps, averaged over
space, weights those maps; their ReLU'd sum, upsampled to the input size and scaled to [0, 1],
shows where the network looked. Transformers (no spatial conv feature map at the end) are not
supported: :func:`find_target_layer` returns ``None`` for them and callers skip with a note.

Example::

    cam = GradCAM(model)                    # finds the last nn.Conv2d of model.backbone
    maps, preds = cam(images)               # images [B,3,H,W] -> maps [B,H,W] in [0,1]
"""
from __future__ import annotations

import torch
from torch import nn


def is_transformer(model: nn.Module) -> bool:
    """True for attention-based backbones (ViT, Swin, DeiT...), whose last conv is a patch embedding."""
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            return True
        if type(m).__name__.endswith("Attention") and hasattr(m, "qkv"):
            return True
    return False


def find_target_layer(model: nn.Module) -> nn.Module | None:
    """The last ``nn.Conv2d`` of the model's backbone (or of the model), or None for non-CNNs."""
    root = getattr(model, "backbone", None) or model
    if is_transformer(root):
        return None
    last = None
    for m in root.modules():
        if isinstance(m, nn.Conv2d):
            last = m
    return last


class GradCAM:
    """Grad-CAM for a classifier ``model`` (images -> logits) on ``target_layer`` (default: last conv)."""

    def __init__(self, model: nn.Module, target_layer: nn.Module | None = None):
        self.model = model
        self.target_layer = target_layer if target_layer is not None else find_target_layer(model)
        if self.target_layer is None:
            raise ValueError("Grad-CAM needs a CNN: no convolution layer found (transformer or MLP model)")
        self._acts: torch.Tensor | None = None
        self._grads: torch.Tensor | None = None

    def _forward_hook(self, module, inputs, output):
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
