"""transferlab.export: ONNX (dynamic batch, metadata, parity, int8) and TorchScript."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_export_fixtures import digits_run, make_run, write_images  # noqa: F401

import transferlab.export
from transferlab.errors import ConfigError


@pytest.fixture
def run_copy(digits_run, tmp_path) -> Path:
    """A private copy of the digits run (tests write into RUN/export)."""
    return Path(shutil.copytree(digits_run, tmp_path / "run"))


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_export_metadata_parity_and_dynamic_batch(run_copy, capsys):
    path = transferlab.export(run_copy, format="onnx")
    assert path == run_copy / "export" / "model.onnx" and path.is_file()
    out = capsys.readouterr().out
    assert "parity OK" in out and "validation images" in out

    # self-contained: nothing but our files beside it (no external-data file)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.json", "model.onnx"]
    info = json.loads((path.parent / "model.json").read_text())
    assert info["classes"] == [str(i) for i in range(10)]
    assert info["recipe"] == "cnn_bn" and info["input_size"] == 32 and info["load_size"] == 32
    assert info["mean"] == [0.485, 0.456, 0.406] and info["interpolation"] == "bilinear"
    parity = info["exports"]["onnx"]["parity"]
    assert parity["ok"] and parity["max_abs_diff"] < 1e-4 and parity["images"] == "16 validation images"
    assert parity["batch_sizes"] == [16, 1]

    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["classes"]) == info["classes"]
    assert json.loads(props["transferlab"])["data_cfg"] == info["data_cfg"]

    # dynamic batch: 1 and 5 both run, and agree with PyTorch
    import torch

    from transferlab.checkpoint import load_model

    model, _ = load_model(run_copy)
    sess = _session(path)
    for b in (1, 5):
        x = np.random.default_rng(b).normal(size=(b, 3, 32, 32)).astype(np.float32)
        got = sess.run(None, {"input": x})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        assert got.shape == (b, 10)
        assert np.abs(got - want).max() < 1e-4


def test_onnx_parity_on_real_photos(tmp_path, photos_dir, weights_dir):
    """Pretrained MobileNet v1 0.25 backbone on real photos: ONNX Runtime == PyTorch."""
    run = make_run(tmp_path / "run", "mobilenet_v1_025_tf", ["a", "b", "c"], input_size=None,
                   weights=weights_dir / "mobilenetv1_025_224_keras_stm32.pth")
    transferlab.export(run, images=[photos_dir], verbose=False)
    parity = json.loads((run / "export" / "model.json").read_text())["exports"]["onnx"]["parity"]
    assert parity["images"].endswith("given images") and int(parity["images"].split()[0]) >= 8
    assert parity["ok"] and parity["max_abs_diff"] < 1e-4 and parity["top1_agreement"] == 1.0


def test_onnx_parity_on_generated_images_without_data(tmp_path):
    run = make_run(tmp_path / "run", "cnn_bn", input_size=32)      # no config.json: data unreachable
    imgs = write_images(tmp_path / "imgs", n=5)
    transferlab.export(run, images=imgs, verbose=False)
    parity = json.loads((run / "export" / "model.json").read_text())["exports"]["onnx"]["parity"]
    assert parity["images"] == "5 given images" and parity["ok"]


def test_onnx_parity_falls_back_to_random_pixels(tmp_path):
    run = make_run(tmp_path / "run", "cnn_base", input_size=32)
    transferlab.export(run, verbose=False)
    parity = json.loads((run / "export" / "model.json").read_text())["exports"]["onnx"]["parity"]
    assert parity["images"].startswith("8 random images") and parity["ok"]


def test_quantize_int8_static_reports_size_and_accuracy(run_copy, capsys):
    path = transferlab.export(run_copy, quantize="int8")
    assert path.name == "model.int8.onnx" and path.is_file()
    out = capsys.readouterr().out
    assert "quantised" in out and "validation accuracy" in out
    entry = json.loads((run_copy / "export" / "model.json").read_text())["exports"]["int8"]
    assert entry["method"].startswith("static")
    assert entry["size_bytes"] < entry["fp32_size_bytes"] == (run_copy / "export" / "model.onnx").stat().st_size
    acc = entry["val_accuracy"]
    assert acc["images"] == 60 and 0 <= acc["int8"] <= 1 and 0 <= acc["fp32"] <= 1
    # the int8 model runs at any batch size
    sess = _session(path)
    assert sess.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})[0].shape == (3, 10)


def test_quantize_int8_without_data_is_dynamic_size_only(tmp_path, capsys):
    run = make_run(tmp_path / "run", "cnn_bn", input_size=32)
    transferlab.export(run, quantize="int8")
    assert "size change only" in capsys.readouterr().out
    entry = json.loads((run / "export" / "model.json").read_text())["exports"]["int8"]
    assert entry["method"].startswith("dynamic") and "val_accuracy" not in entry
    assert entry["size_bytes"] < entry["fp32_size_bytes"]


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is deprecated in torch 2.14; still offered
def test_torchscript_export_parity(run_copy):
    import torch

    path = transferlab.export(run_copy, format="torchscript", verbose=False)
    assert path == run_copy / "export" / "model.pt"
    info = json.loads((run_copy / "export" / "model.json").read_text())
    assert info["exports"]["torchscript"]["parity"]["ok"]
    scripted = torch.jit.load(str(path))
    assert scripted(torch.zeros(5, 3, 32, 32)).shape == (5, 10)


def test_second_export_keeps_the_other_formats(run_copy):
    transferlab.export(run_copy, format="torchscript", verbose=False)
    transferlab.export(run_copy, format="onnx", verbose=False)
    exports = json.loads((run_copy / "export" / "model.json").read_text())["exports"]
    assert set(exports) == {"onnx", "torchscript"}


def test_bad_options(run_copy):
    with pytest.raises(ConfigError, match="format"):
        transferlab.export(run_copy, format="tflite")
    with pytest.raises(ConfigError, match="int8"):
        transferlab.export(run_copy, quantize="int4")
    with pytest.raises(ConfigError, match="onnx"):
        transferlab.export(run_copy, format="torchscript", quantize="int8")


def test_cli_export(run_copy, capsys):
    from transferlab.cli import main

    assert main(["export", str(run_copy)]) == 0
    assert "parity OK" in capsys.readouterr().out
    assert main(["export", str(run_copy.parent / "missing")]) == 2
    assert "run not found" in capsys.readouterr().err


def test_run_splits_are_trainings_split_when_files_are_broken(tmp_path):
    """A broken file is dropped before the split is drawn; the export's check images must be training's val."""
    from transferlab.data import load_data
    from transferlab.export import run_splits

    data = tmp_path / "data"
    for i, cls in enumerate(("cat", "dog")):
        write_images(data / cls, n=9, seed=i)
    (data / "cat" / "broken.png").write_bytes(b"not an image")
    run = make_run(tmp_path / "run", "cnn_base", ["cat", "dog"], data=data)

    from transferlab.data import DataWarning

    with pytest.warns(DataWarning, match="broken"):
        trained = load_data(data, val_ratio=0.2, seed=0)  # what training does
    with pytest.warns(DataWarning, match="broken"):
        splits = run_splits(run)
    assert splits.val == trained.val and splits.train == trained.train
    assert not any("broken" in str(p) for p, _ in splits.train + splits.val)
