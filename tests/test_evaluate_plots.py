"""Evaluation plots are valid, non-empty PNGs; Grad-CAM gives maps of the right shape."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from transferlab.evaluation import compute_metrics, roc_curves
from transferlab import runfolder
from transferlab.evaluation import plots
from transferlab.evaluation.gradcam import GradCAM, find_target_layer, gradcam

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=1024):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"
    from PIL import Image

    with Image.open(path) as im:
        im.verify()


def fake_predictions(n_classes, n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs, [f"class_{i:02d}" for i in range(n_classes)]


@pytest.mark.parametrize("n_classes", [2, 10, 50])
def test_metric_plots_are_written(tmp_path, n_classes):
    y, probs, classes = fake_predictions(n_classes)
    m = compute_metrics(y, probs, classes)
    out = [
        plots.plot_confusion(m["confusion_matrix"], classes, tmp_path / "cm.png", m["confusion_matrix_normalized"]),
        plots.plot_roc(roc_curves(y, probs, classes), classes, tmp_path / "roc.png"),
        plots.plot_f1_bars(m["per_class"], tmp_path / "f1.png", m["macro_avg"]["f1"]),
    ]
    for p in out:
        assert_png(p)


def test_history_and_image_grids(tmp_path):
    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 1 - 0.5 / e, "val_acc": 0.9 - 0.5 / e}
            for e in range(1, 6)]
    assert_png(plots.plot_history(hist, tmp_path / "history.png", "demo"))
    rng = np.random.default_rng(0)
    mistakes = [{"image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "true": "cat", "pred": "dog", "prob": 0.9}
                for _ in range(5)]
    assert_png(plots.plot_mistakes(mistakes, tmp_path / "mistakes.png"))
    assert_png(plots.plot_mistakes([], tmp_path / "none.png"))  # "no mistakes" placeholder


def test_read_history(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n1,1.0,0.5,1.1,0.4,0.001,2.5\n")
    rows = runfolder.read_history(tmp_path / "history.csv")
    assert rows == [{"epoch": 1.0, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.4,
                     "lr": 0.001, "seconds": 2.5}]
    assert runfolder.read_history(tmp_path / "missing.csv") == []
    # a blank or damaged cell (hand-edited file, empty validation set) is None and still plots
    with (tmp_path / "history.csv").open("a") as f:
        f.write("2,0.8,oops,,0.5,0.001,2.5\n")
    rows = runfolder.read_history(tmp_path / "history.csv")
    assert rows[1]["train_acc"] is None and rows[1]["val_loss"] is None and rows[1]["epoch"] == 2
    assert plots.plot_history(rows, tmp_path / "h.png", "run").stat().st_size > 1000


class TinyCNN(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def test_gradcam_map_shape_and_range():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    for p in model.backbone.parameters():  # frozen backbone: gradients must still reach the features
        p.requires_grad_(False)
    x = torch.randn(4, 3, 40, 40)
    assert find_target_layer(model) is model.backbone[3]
    maps, preds = gradcam(model, x)
    assert maps.shape == (4, 40, 40)
    assert preds.shape == (4,)
    assert torch.equal(preds, model(x).argmax(1))
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    for m in maps:
        assert float(m.std()) > 0.0, "Grad-CAM map is constant"
    # an explicit target class works too
    maps2, _ = GradCAM(model)(x, target=[0, 1, 2, 0])
    assert maps2.shape == (4, 40, 40)
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


def test_gradcam_skips_transformers():
    class TinyViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 8, 8, stride=8))  # patch embedding
            self.attn = nn.MultiheadAttention(8, 2)
            self.head = nn.Linear(8, 2)

    model = TinyViT()
    model.backbone.add_module("attn", nn.MultiheadAttention(8, 2))
    assert find_target_layer(model) is None
    with pytest.raises(ValueError):
        GradCAM(model)


def test_gradcam_target_on_real_recipes():
    from transferlab.models import create_model

    resnet = create_model("resnet_scratch", 4, pretrained=False, input_size=64).eval()
    assert find_target_layer(resnet) is resnet.backbone.layer4  # timm's last feature stage
    maps, _ = gradcam(resnet, torch.randn(2, 3, 64, 64))
    assert maps.shape == (2, 64, 64) and all(float(m.std()) > 0 for m in maps)
    vit = create_model("timm:vit_tiny_patch16_224", 4, pretrained=False)
    assert find_target_layer(vit) is None  # transformer: Grad-CAM is skipped with a note
