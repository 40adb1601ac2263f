"""export --format openvino (with NNCF int8) and --format coreml, and predict --backend openvino."""
from __future__ import annotations

import json

import numpy as np
import torch
import pytest

import transferlab
from transferlab import export_formats, runfolder
from transferlab.errors import ConfigError, ParityError, TransferlabError
from transferlab.predictor import Predictor

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")


@pytest.fixture(scope="module")
def run_dir(digits_dir, tmp_path_factory):
    run = transferlab.train(digits_dir, model="cnn_base", epochs=2, input_size=32, batch_size=32,
                            run_dir=str(tmp_path_factory.mktemp("runs")), progress=False)
    return run.dir


def test_openvino_export_matches_pytorch_and_predicts(run_dir, digits_dir):
    path = transferlab.export(run_dir, format="openvino")
    out = runfolder.export_dir(run_dir)
    assert path == out / "model.xml" and (out / "model.bin").is_file() and (out / "model.onnx").is_file()
    entry = json.loads((out / "model.json").read_text())["exports"]["openvino"]
    assert entry["parity"]["ok"] and entry["parity"]["max_abs_diff"] < 1e-4 and entry["parity"]["top1_agreement"] == 1
    assert entry["size_bytes"] == (out / "model.xml").stat().st_size + (out / "model.bin").stat().st_size
    files = sorted(str(f) for f in (digits_dir / "8").glob("*.png"))[:5]
    torch_p, ov_p = Predictor(run_dir, backend="torch"), Predictor(run_dir, backend="openvino")
    batch = np.stack([torch_p.preprocess.load(f) for f in files])
    assert ov_p.predict_arrays(batch) == pytest.approx(torch_p.predict_arrays(batch), abs=1e-4)  # the parity tolerance
    assert ov_p.info["backend"] == "openvino" and ov_p.model_file == out / "model.xml"
    with pytest.raises(TransferlabError, match="--format openvino --quantize int8"):
        Predictor(run_dir, backend="openvino-int8")
    # fp32 in fp32: OpenVINO's CPU plugin would run it in bf16 where the CPU has bf16 units
    assert str(ov_p._model.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")


def test_openvino_int8_is_smaller_and_agrees(run_dir, digits_dir):
    path = transferlab.export(run_dir, format="openvino", quantize="int8")
    assert path.name == "model.int8.xml"
    q = json.loads((runfolder.export_dir(run_dir) / "model.json").read_text())["exports"]["openvino_int8"]
    assert q["size_ratio"] < 0.5 and q["vs_pytorch"]["top1_agreement"] >= 0.9 and "NNCF" in q["method"]
    rows = transferlab.predict(run_dir, digits_dir / "2", topk=1, backend="openvino-int8", progress=False)
    torch_rows = transferlab.predict(run_dir, digits_dir / "2", topk=1, backend="torch", progress=False)
    agree = np.mean([a["top"][0]["class"] == b["top"][0]["class"] for a, b in zip(rows, torch_rows)])
    assert len(rows) == 30 and agree >= 0.9


def test_a_parity_failure_writes_no_openvino_files(run_dir, monkeypatch, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export"))
    real = export_formats.openvino_probs
    monkeypatch.setattr(export_formats, "openvino_probs", lambda c: (lambda x: real(c)(x)[:, ::-1].copy()))
    with pytest.raises(ParityError, match="OpenVINO"):
        transferlab.export(copy, format="openvino")
    out = runfolder.export_dir(copy)
    assert not (out / "model.xml").exists() and not (out / "model.bin").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".staged")]


def test_coreml_package_is_written_and_its_spec_validated(run_dir):
    pytest.importorskip("coremltools", reason="the coreml extra is not installed")
    path = transferlab.export(run_dir, format="coreml")
    assert path.name == "model.mlpackage" and path.is_dir() and (path / "Manifest.json").is_file()
    entry = json.loads((runfolder.export_dir(run_dir) / "model.json").read_text())["exports"]["coreml"]
    assert entry["parity"] is None and "not run" in entry["validated"] and "[1-64, 3, 32, 32]" in entry["validated"]
    with pytest.raises(TransferlabError, match="input shape ranges"):
        export_formats.validate_coreml(path, 64)  # a package for 32 px is not one for 64 px


def test_bad_combinations_and_missing_extras_are_one_line(run_dir, monkeypatch):
    with pytest.raises(ConfigError, match="needs --format onnx or openvino"):
        transferlab.export(run_dir, format="coreml", quantize="int8")
    import importlib

    real = importlib.import_module

    def no_openvino(name, *a, **k):
        if name == "openvino":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_openvino)
    with pytest.raises(TransferlabError, match=r'pip install "transferlab\[openvino\]"'):
        transferlab.export(run_dir, format="openvino")


def test_coreml_falls_back_to_torch_export_at_batch_1_and_fails_in_one_line(run_dir, monkeypatch, tmp_path):
    ct = pytest.importorskip("coremltools", reason="the coreml extra is not installed")
    from transferlab.checkpoint import load_model

    model, _ = load_model(run_dir)
    real = ct.convert

    def no_traced(m, *a, **k):  # the traced route fails as it does for timm's EfficientNet-Lite0
        if isinstance(m, torch.jit.ScriptModule):
            raise TypeError("only 0-dimensional arrays can be converted to Python scalars")
        return real(m, *a, **k)

    monkeypatch.setattr(ct, "convert", no_traced)
    entry = export_formats.export_coreml(model.eval(), 32, tmp_path)
    assert "torch.export, batch 1" in entry["converter"] and "[1, 3, 32, 32]" in entry["validated"]
    assert (tmp_path / "model.mlpackage").is_dir()

    def nothing(m, *a, **k):
        raise RuntimeError("unsupported op\nmore detail")

    monkeypatch.setattr(ct, "convert", nothing)
    with pytest.raises(TransferlabError, match=r"Core ML conversion failed \(traced: RuntimeError: unsupported op; "
                                               r"torch.export: RuntimeError: unsupported op\)"):
        export_formats.export_coreml(model.eval(), 32, tmp_path / "x")
