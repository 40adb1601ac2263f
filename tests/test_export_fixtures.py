"""Run folders for the export / predict / serve tests, built without ``transferlab.train``.

``make_run`` saves a model with contract-shaped metadata as ``RUN/best.safetensors`` (and, with
``data=``, a ``config.json`` pointing at a dataset so that export finds validation and calibration
images). With ``fit=True`` the model is first fitted to the dataset's training split by a plain
full-batch loop (a few seconds), so that its probabilities are confident rather than nearly uniform:
on an untrained model (probabilities 0.094-0.106) a 1% error in the logits moves a probability by
only 6e-5, under the parity tolerance, and deployment tests would not see it.
``digits_run`` and ``exported_run`` are fitted. Import the fixtures you need::

    from test_export_fixtures import digits_run, make_run, write_images  # noqa: F401
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def make_run(run_dir: Path, recipe: str = "cnn_bn", classes=None, *, input_size: int | None = 32,
             data: Path | None = None, seed: int = 0, weights: Path | None = None, metrics=None,
             fit: bool = False) -> Path:
    import torch

    from transferlab.checkpoint import save_model
    from transferlab.models import create_model

    classes = list(classes or ["cat", "dog", "bird"])
    torch.manual_seed(seed)
    kwargs = {"pretrained": True, "weights": str(weights)} if weights else {"pretrained": False}
    model = create_model(recipe, num_classes=len(classes), input_size=input_size, **kwargs)
    if fit:
        fit_model(model, data)
    meta = {"recipe": recipe, "classes": classes, "num_classes": len(classes),
            "head": list(model.head_hidden), "dropout": list(model.head_dropout),
            "data_cfg": model.data_cfg, "epoch": 1,
            "metrics": metrics if metrics is not None else {"val_acc": 0.5, "val_loss": 1.0}}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(run_dir / "best.safetensors", model, meta)
    if data is not None:
        (run_dir / "config.json").write_text(json.dumps(
            {"model": recipe, "data": str(data), "val_ratio": 0.2, "seed": 0, "classes": classes,
             "data_cfg": model.data_cfg}))
    return run_dir


def _arrays(model, samples):
    import torch

    from transferlab.runtime import Preprocess

    pre = Preprocess(model.data_cfg)
    x = torch.from_numpy(np.stack([pre.load(p) for p, _ in samples]))
    return x, torch.tensor([y for _, y in samples])


def fit_model(model, data: Path, steps: int = 30) -> None:
    """Fit ``model``'s head to the training split of ``data`` on the (fixed) backbone's features, full
    batch with Adam: a few seconds, and confident, mostly right predictions on the validation
    split (checked here, so that no deployment test runs on a near-uniform model)."""
    import torch

    from transferlab.data import load_data

    splits = load_data(data, val_ratio=0.2, seed=0, scan=False)
    x, y = _arrays(model, splits.train)
    model.eval()
    with torch.no_grad():
        features = model.backbone(x)
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model.head(features), y).backward()
        opt.step()
    xv, yv = _arrays(model, splits.val)
    with torch.no_grad():
        probs = model(xv).softmax(1)
    assert (probs.argmax(1) == yv).float().mean() >= 0.6, "the fixture model did not learn"
    assert probs.max(1).values.median() >= 0.6, "the fixture model is not confident"


def skewed(model, factor: float = 1.01):
    """``model`` with its logits multiplied by ``factor`` (1% too large by default): what a broken
    export computes. Export it in place of the model to get a file that disagrees with PyTorch."""
    import torch

    class Skewed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner(x) * factor

    return Skewed().eval()


def write_images(folder: Path, n: int = 4, size=(48, 40), seed: int = 0, ext: str = ".png") -> list[Path]:
    """n generated RGB images (smooth gradients + noise) in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, np.full_like(xx, 40 * i % 255)], -1)
        arr = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        p = folder / f"img{i}{ext}"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, digits_dir) -> Path:
    """cnn_bn (32 px) fitted to the 10 digit classes, config.json pointing at the real digits sample."""
    classes = sorted(p.name for p in Path(digits_dir).iterdir() if p.is_dir())
    return make_run(tmp_path_factory.mktemp("runs") / "cnn_bn", "cnn_bn", classes, input_size=32, data=digits_dir,
                    fit=True)


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory, digits_dir) -> Path:
    """Like digits_run (fitted), exported to ONNX once per session (for predict / serve tests)."""
    import transferlab.exporter

    classes = sorted(p.name for p in Path(digits_dir).iterdir() if p.is_dir())
    run = make_run(tmp_path_factory.mktemp("runs") / "cnn_bn_onnx", "cnn_bn", classes, input_size=32,
                   data=digits_dir, fit=True)
    transferlab.export(run, format="onnx", verbose=False)
    return run
