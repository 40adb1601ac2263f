"""The main job end to end: inspect -> compare -> evaluate -> export the best -> report."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from transferlab.cli import main
from transferlab.pipeline import run_pipeline


@pytest.fixture(scope="module")
def job(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    logs: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logs.append(record.getMessage())

    keep = Keep()
    logging.getLogger("transferlab").addHandler(keep)
    try:
        summary = run_pipeline(digits_dir, out=out, models=["cnn_base", "cnn_bn"], epochs=1, input_size=32,
                               progress=False)
    finally:
        logging.getLogger("transferlab").removeHandler(keep)
    return out, summary, logs


def test_pipeline_writes_every_stage(job):
    out, summary, logs = job
    # stage 1: the data report
    report = json.loads((out / "inspect.json").read_text())
    assert report["num_classes"] == 10 and report["totals"]["all"] > 0
    # stage 2: both models trained and evaluated, ranked best first
    rows = summary["leaderboard"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert {r["model"] for r in rows} == {"cnn_base", "cnn_bn"}
    assert rows[0]["accuracy"] >= rows[1]["accuracy"]
    for r in rows:
        assert (Path(r["run_dir"]) / "eval-val" / "metrics.json").is_file()
    # stage 3: the best one exported to a valid ONNX file with its preprocessing metadata
    assert summary["best"]["model"] == rows[0]["model"]
    onnx_path = Path(summary["onnx"])
    assert onnx_path.is_file() and onnx_path.parent.parent == Path(rows[0]["run_dir"])
    onnx.checker.check_model(str(onnx_path))
    meta = json.loads((onnx_path.parent / "model.json").read_text())
    assert meta["classes"] == report["classes"]
    # stage 4: the report and the serve command
    html = Path(summary["report"]).read_text()
    assert "cnn_base" in html and "cnn_bn" in html
    assert summary["serve_command"] == f"transferlab serve {rows[0]['run_dir']}"
    assert json.loads((out / "summary.json").read_text())["best"]["model"] == rows[0]["model"]
    steps = [line for line in logs if line.startswith("step ")]  # one counter for the job's steps
    assert steps[-1].startswith(f"step {len(steps)}/{len(steps)}: writing the report"), steps


def test_pipeline_reuses_finished_models(job, digits_dir, monkeypatch):
    out, summary, _ = job
    import transferlab.training as train_module

    def no_training(*a, **k):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(train_module, "train", no_training)
    again = run_pipeline(
        digits_dir, out=out, models=["cnn_base", "cnn_bn"], epochs=1, input_size=32, progress=False
    )
    assert again["best"]["model"] == summary["best"]["model"]


def test_transfer_model_without_weights_is_skipped_not_fatal(digits_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFERLAB_WEIGHTS", str(tmp_path / "no-weights-here"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    summary = run_pipeline(
        digits_dir, out=tmp_path / "out", models=["cnn_base", "densenet121"], epochs=1, input_size=32,
        progress=False,
    )
    rows = {r["model"]: r for r in summary["leaderboard"]}
    assert rows["cnn_base"]["status"] == "ok"
    assert rows["densenet121"]["status"] == "skipped"
    assert "\n" not in rows["densenet121"]["reason"] and "weights" in rows["densenet121"]["reason"].lower()
    assert summary["best"]["model"] == "cnn_base"


def test_run_command_deploys_only_an_export_that_passed_its_check(digits_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    args = ["run", str(digits_dir), "--out", str(out), "--models", "cnn_base", "--epochs", "1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    run = out / "compare" / "runs" / "cnn_base"
    onnx_path = run / "export" / "model.onnx"
    assert "best model: cnn_base" in printed and f"exported:   {onnx_path}" in printed
    assert f"serve it:   transferlab serve {run}" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["onnx"] == str(onnx_path) and summary["serve_command"] == f"transferlab serve {run}"
    # what is deployed is this run's best checkpoint, checked against PyTorch on its validation images
    from transferlab import runfolder
    from transferlab.predictor import Predictor

    info = json.loads((run / "export" / "model.json").read_text())
    assert info["source_checkpoint"]["sha256"] == runfolder.file_sha256(run / "best.safetensors")
    parity = info["exports"]["onnx"]["parity"]
    assert parity["ok"] and parity["images"].endswith("validation images") and parity["max_abs_diff"] < 1e-4
    images = sorted(str(p) for p in Path(digits_dir).glob("*/*.png"))[::37]
    served, reference = Predictor(run), Predictor(run, backend="torch")
    assert served.backend == "onnx"
    batch = np.stack([served.preprocess.load(p) for p in images])
    np.testing.assert_allclose(served.predict_arrays(batch), reference.predict_arrays(batch), atol=1e-4)

    # the same job again, but the export disagrees with PyTorch: an error, and nothing presented as deployed
    import transferlab.exporter as export_module
    from test_export_fixtures import skewed

    real = export_module.export_onnx_graph
    monkeypatch.setattr(export_module, "export_onnx_graph", lambda model, *a, **k: real(skewed(model, 3.0), *a, **k))
    before = onnx_path.read_bytes()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "reusing" in captured.out and "parity MISMATCH" in captured.out
    assert captured.err.strip().startswith("error: parity check failed") and "\n" not in captured.err.strip()
    assert "serve it:" not in captured.out and "exported:" not in captured.out
    assert not (out / "summary.json").exists()
    assert onnx_path.read_bytes() == before  # the earlier, checked export is not replaced


def test_run_command_bad_path_is_one_line_error(tmp_path, capsys):
    code = main(["run", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_bad_metric_fails_before_any_work(digits_dir, tmp_path):
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown --metric 'acc'"):
        run_pipeline(digits_dir, out=tmp_path / "o", metric="acc", progress=False)
    assert not (tmp_path / "o").exists()  # nothing scanned, nothing written
    with pytest.raises(SystemExit) as exc:
        main(["run", str(digits_dir), "--metric", "acc"])
    assert exc.value.code == 2
