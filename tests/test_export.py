"""transferlab.export: ONNX (dynamic batch, metadata, parity, int8) and TorchScript."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_export_fixtures import digits_run, make_run, skewed, write_images  # noqa: F401

import transferlab.exporter
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
    assert "parity OK: ONNX Runtime vs PyTorch on 16 validation images (batch 16 and 1): max |dprob| = " in out

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
    # fp32 ONNX scores exactly what PyTorch scores on the 60 validation images; int8 stays close
    assert acc["images"] == 60 and acc["fp32"] == pytest.approx(_torch_val_accuracy(run_copy), abs=1e-9)
    assert acc["fp32"] >= 0.6 and abs(acc["int8"] - acc["fp32"]) <= 0.1
    assert entry["vs_pytorch"]["top1_agreement"] >= 0.8
    # the int8 model runs at any batch size
    sess = _session(path)
    assert sess.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})[0].shape == (3, 10)

    # and serves predictions: --backend int8 agrees with the fp32 export on most validation images
    from transferlab.data import load_data
    from transferlab.predictor import Predictor

    val = [p for p, _ in load_data(json.loads((run_copy / "config.json").read_text())["data"], scan=False).val]
    int8, fp32 = Predictor(run_copy, backend="int8"), Predictor(run_copy, backend="onnx")
    assert int8.backend == "int8" and int8.model_file.name == "model.int8.onnx"
    labels = [[r["label"] for r in p.predict_paths(val, topk=1)] for p in (int8, fp32)]
    assert np.mean([a == b for a, b in zip(*labels)]) >= 0.8
    from transferlab.cli import main

    assert main(["predict", str(run_copy), val[0], "--backend", "int8", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["label"] == labels[0][0]


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


def _torch_val_accuracy(run: Path) -> float:
    import torch

    from transferlab.checkpoint import load_model
    from transferlab.data import load_data
    from transferlab.runtime import Preprocess

    model, meta = load_model(run)
    val = load_data(json.loads((run / "config.json").read_text())["data"], scan=False).val
    pre = Preprocess(meta["data_cfg"])
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.stack([pre.load(p) for p, _ in val])))
    return float((logits.argmax(1).numpy() == np.array([y for _, y in val])).mean())


def test_fixture_model_is_trained_not_uniform(run_copy):
    """Deployment tests run on a fitted model: on a near-uniform one a 1% logit error hides under 1e-4."""
    assert _torch_val_accuracy(run_copy) >= 0.6


@pytest.fixture
def skewed_onnx(monkeypatch):
    """Every ONNX export writes a model whose logits are 1% off PyTorch's."""
    real = transferlab.exporter.export_onnx_graph
    monkeypatch.setattr(transferlab.exporter, "export_onnx_graph",
                        lambda model, *a, **k: real(skewed(model), *a, **k))


def test_parity_mismatch_refuses_the_export(run_copy, skewed_onnx, capsys):
    from transferlab.exporter import ParityError

    with pytest.raises(ParityError, match=r"parity check failed: ONNX Runtime differs from PyTorch by") as info:
        transferlab.export(run_copy)
    assert "--accept-parity-mismatch" in str(info.value) and "\n" not in str(info.value)
    assert "parity MISMATCH" in capsys.readouterr().out
    diff = float(str(info.value).split("by ")[1].split(" ")[0])
    assert diff > 1e-3  # a 1% logit error on a confident model is far over the 1e-4 tolerance
    export_dir = run_copy / "export"
    assert not (export_dir / "model.onnx").exists() and not (export_dir / "model.json").exists()
    assert [p.name for p in export_dir.iterdir()] == []  # nothing staged left behind


def test_parity_mismatch_keeps_the_earlier_export(run_copy, monkeypatch):
    from transferlab.exporter import ParityError

    good = transferlab.export(run_copy, verbose=False)
    before = good.read_bytes(), (good.parent / "model.json").read_text()
    real = transferlab.exporter.export_onnx_graph
    monkeypatch.setattr(transferlab.exporter, "export_onnx_graph", lambda model, *a, **k: real(skewed(model), *a, **k))
    with pytest.raises(ParityError):
        transferlab.export(run_copy, verbose=False)
    assert (good.read_bytes(), (good.parent / "model.json").read_text()) == before


def test_cli_export_exits_non_zero_on_mismatch_unless_accepted(run_copy, skewed_onnx, capsys):
    from transferlab.cli import main

    assert main(["export", str(run_copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: parity check failed") and "\n" not in err
    assert not (run_copy / "export" / "model.onnx").exists()
    assert main(["export", str(run_copy), "--accept-parity-mismatch"]) == 0
    out = capsys.readouterr().out
    assert "parity MISMATCH" in out and "keeping model.onnx" in out
    parity = json.loads((run_copy / "export" / "model.json").read_text())["exports"]["onnx"]["parity"]
    assert parity["ok"] is False and parity["accepted"] is True and parity["max_abs_diff"] > 1e-3
    assert (run_copy / "export" / "model.onnx").is_file()


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_parity_mismatch_is_refused(run_copy, monkeypatch):
    from transferlab.exporter import ParityError

    real = transferlab.exporter._export_torchscript
    monkeypatch.setattr(transferlab.exporter, "_export_torchscript",
                        lambda model, *a: real(skewed(model), *a))
    with pytest.raises(ParityError, match="TorchScript differs"):
        transferlab.export(run_copy, format="torchscript", verbose=False)
    assert not (run_copy / "export" / "model.pt").exists()
    path = transferlab.export(run_copy, format="torchscript", verbose=False, accept_mismatch=True)
    assert path.is_file()
    parity = json.loads((run_copy / "export" / "model.json").read_text())["exports"]["torchscript"]["parity"]
    assert not parity["ok"] and parity["accepted"]


def test_parity_compares_batch_n_and_batch_1():
    from transferlab.exporter import parity_check, _parity_line

    reference = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    batch = np.zeros((3, 1))
    exact = parity_check(lambda x: reference[: len(x)], reference, batch, "3 given images", 1e-4)
    assert exact == {"images": "3 given images", "batch_sizes": [3, 1], "max_abs_diff": 0.0, "top1_agreement": 1.0,
                     "tolerance": 1e-4, "ok": True}
    assert _parity_line("ONNX Runtime", exact) == (
        "parity OK: ONNX Runtime vs PyTorch on 3 given images (batch 3 and 1): max |dprob| = 0.00e+00 "
        "(tolerance 1e-04), top-1 agreement 100%")
    # off only when run one image at a time (e.g. a batch-dependent export): still a mismatch
    single_off = parity_check(lambda x: reference[: len(x)] + (0.01 if len(x) == 1 else 0.0), reference, batch, "s", 1e-4)
    assert single_off["max_abs_diff"] == pytest.approx(0.01) and not single_off["ok"]
    assert single_off["top1_agreement"] == 1.0
    # off at batch N: the largest difference counts, and the top-1 agreement is the share of equal argmaxes
    swapped = reference.copy()
    swapped[2] = [0.4, 0.3, 0.3]
    n_off = parity_check(lambda x: swapped[: len(x)], reference, batch, "s", 1e-4)
    assert n_off["max_abs_diff"] == pytest.approx(0.1) and n_off["top1_agreement"] == pytest.approx(2 / 3)
    assert not n_off["ok"] and "parity MISMATCH" in _parity_line("x", n_off) and "67%" in _parity_line("x", n_off)
    # the tolerance is strict (binary-exact values: a difference of exactly 0.25), and NaN never passes
    exact = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    at_tolerance = parity_check(lambda x: exact[: len(x)] + 0.25, exact, batch, "s", 0.25)
    assert at_tolerance["max_abs_diff"] == 0.25 and not at_tolerance["ok"]
    assert parity_check(lambda x: exact[: len(x)] + 0.25, exact, batch, "s", 0.5)["ok"]
    assert not parity_check(lambda x: reference[: len(x)] * np.nan, reference, batch, "s", 1e-4)["ok"]


def test_onnx_exporter_falls_back_to_torchscript_and_reports_both_failures(run_copy, monkeypatch):
    import torch

    real = torch.onnx.export
    seen = []

    def dynamo_fails(*args, dynamo=True, **kwargs):
        seen.append(dynamo)
        if dynamo:
            raise RuntimeError("unsupported operator\nmore detail")
        return real(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    path = transferlab.export(run_copy, verbose=False)
    assert seen == [True, False]
    onnx_entry = json.loads((path.parent / "model.json").read_text())["exports"]["onnx"]
    assert onnx_entry["exporter"] == "torchscript" and onnx_entry["parity"]["ok"]
    sess = _session(path)
    assert sess.run(None, {"input": np.zeros((4, 3, 32, 32), np.float32)})[0].shape == (4, 10)  # dynamic batch

    def both_fail(*args, dynamo=True, **kwargs):
        raise ValueError(f"no luck with dynamo={dynamo}")

    monkeypatch.setattr(torch.onnx, "export", both_fail)
    from transferlab.errors import TransferlabError

    with pytest.raises(TransferlabError) as info:
        transferlab.export(run_copy, verbose=False)
    assert str(info.value) == ("ONNX export of 'cnn_bn' failed: dynamo: ValueError: no luck with dynamo=True; "
                               "torchscript: ValueError: no luck with dynamo=False")
    assert path.read_bytes()  # the earlier export is still there


def test_run_splits_are_trainings_split_when_files_are_broken(tmp_path):
    """A broken file is dropped before the split is drawn; the export's check images must be training's val."""
    from transferlab.data import load_data
    from transferlab.exporter import run_splits

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


def test_parity_inputs_validation_then_given_images_then_random(tmp_path):
    from transferlab.data import DataSplits
    from transferlab.exporter import PARITY_IMAGES, _spread, parity_inputs
    from transferlab.runtime import Preprocess

    pre = Preprocess({"input_size": 16, "load_size": 18, "mean": [0.5] * 3, "std": [0.25] * 3})
    good = write_images(tmp_path / "val", n=20)
    broken = tmp_path / "bad" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"not an image")
    val = [(str(p), 0) for p in good[:3]] + [(str(broken), 0)]
    splits = DataSplits(root=str(tmp_path), layout="class-folders", classes=["a"], train=[], val=val, test=[])
    batch, source = parity_inputs(pre, splits, None)
    assert source == "3 validation images" and batch.shape == (3, 3, 16, 16) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], pre.load(str(good[0])))  # the images themselves, preprocessed
    # more validation images than needed: PARITY_IMAGES of them, spread over the list
    many = dataclasses_replace(splits, val=[(str(p), 0) for p in good])
    batch, source = parity_inputs(pre, many, None)
    assert source == f"{PARITY_IMAGES} validation images" and len(batch) == PARITY_IMAGES == 16
    # validation unreadable or absent: the given images (at most PARITY_IMAGES of them), else random pixels
    unreadable = dataclasses_replace(splits, val=[(str(broken), 0)])
    batch, source = parity_inputs(pre, unreadable, [tmp_path / "val"])
    assert source == f"{PARITY_IMAGES} given images" and len(batch) == PARITY_IMAGES
    batch, source = parity_inputs(pre, None, good[:2])
    assert source == "2 given images"
    batch, source = parity_inputs(pre, unreadable, None)
    assert source == "8 random images (no data reachable)" and batch.shape == (8, 3, 16, 16)
    again, _ = parity_inputs(pre, None, [])
    np.testing.assert_array_equal(batch, again)  # seeded: the same pixels every time
    pixels = batch * 0.25 + 0.5  # back to [0, 1]: uniform noise over every byte value, 0 and 255 included
    assert float(pixels.min()) == pytest.approx(0.0, abs=1e-6) and float(pixels.max()) == pytest.approx(1.0, abs=1e-6)
    assert float(pixels.mean()) == pytest.approx(0.5, abs=0.02)
    # _spread: n items spread evenly, rounded to the nearest index
    assert _spread(list(range(11)), 4) == [0, 3, 7, 10]
    assert _spread(list(range(3)), 4) == [0, 1, 2] and _spread(list(range(4)), 4) == [0, 1, 2, 3]


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)
