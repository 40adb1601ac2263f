"""Run folders for the export / predict / serve tests, built WITHOUT training.

``make_run`` saves a freshly initialised model with contract-shaped metadata as
``RUN/best.safetensors`` (and, with ``data=``, a ``config.json`` pointing at a dataset so that
export finds validation and calibration images). Import the fixtures you need::

    from test_export_fixtures import digits_run, make_run, write_images  # noqa: F401
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def make_run(run_dir: Path, recipe: str = "cnn_bn", classes=None, *, input_size: int | None = 32,
             data: Path | None = None, seed: int = 0, weights: Path | None = None, metrics=None) -> Path:
    import torch

    from transferlab.checkpoint import save_model
    from transferlab.models import create_model

    classes = list(classes or ["cat", "dog", "bird"])
    torch.manual_seed(seed)
    kwargs = {"pretrained": True, "weights": str(weights)} if weights else {"pretrained": False}
    model = create_model(recipe, num_classes=len(classes), input_size=input_size, **kwargs)
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
    """cnn_bn (32 px) for the 10 digit classes, config.json pointing at the real digits sample."""
    classes = sorted(p.name for p in Path(digits_dir).iterdir() if p.is_dir())
    return make_run(tmp_path_factory.mktemp("runs") / "cnn_bn", "cnn_bn", classes, input_size=32, data=digits_dir)


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory, digits_dir) -> Path:
    """Like digits_run, exported to ONNX once per session (for predict / serve tests)."""
    import transferlab.export

    classes = sorted(p.name for p in Path(digits_dir).iterdir() if p.is_dir())
    run = make_run(tmp_path_factory.mktemp("runs") / "cnn_bn_onnx", "cnn_bn", classes, input_size=32,
                   data=digits_dir)
    transferlab.export(run, format="onnx", verbose=False)
    return run
