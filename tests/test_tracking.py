"""Experiment tracking, for real: ``--trackers tensorboard`` event files read back with TensorBoard's own
reader, and ``--trackers mlflow`` against a real ``mlflow server`` started here on 127.0.0.1 (queried
through MlflowClient). Skipped, with the reason, only where the ``[tracking]`` extra is not
installed; CI installs it (.ci/run)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from transferlab import runfolder
from transferlab.cli import main
from transferlab.errors import ConfigError
from transferlab.training import Callback, train
from transferlab.training.config import TrainConfig

FAST = dict(model="cnn_base", input_size=32, progress=False)
EXTRA = "the [tracking] extra is not installed (pip install 'transferlab[tracking]')"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from transferlab.data.sample import write_digits

    return write_digits(tmp_path_factory.mktemp("small") / "digits", per_class=12, size=32)


# ---------------------------------------------------------------- a missing extra

def test_missing_extra_is_one_line_naming_the_install(small, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"--trackers mlflow needs the tracking extra: pip install 'transferlab\[tracking\]'"):
        TrainConfig(model="cnn_base", trackers="mlflow").resolve({})
    for cmd in (["train", str(small), "--model", "cnn_base", "--run-dir", str(tmp_path / "runs")],
                ["compare", str(small), "--models", "cnn_base", "--out", str(tmp_path / "cmp")]):
        assert main([*cmd, "--trackers", "mlflow", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "error: --trackers mlflow needs the tracking extra: pip install 'transferlab[tracking]'"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cmp").exists()


def test_unknown_tracker_is_refused_before_training(small, tmp_path, capsys):
    assert main(["train", str(small), "--model", "cnn_base", "--trackers", "wandb", "--run-dir", str(tmp_path),
                 "--no-progress"]) == 2
    assert "unknown --trackers 'wandb': choose from tensorboard, mlflow" in capsys.readouterr().err


def test_trackers_are_training_callbacks_without_importing_torch():
    """Both trackers subclass the one Callback base of transferlab.train (whose no-op hooks they
    inherit), and importing transferlab.tracking still loads no PyTorch."""
    from transferlab import tracking

    for cls in (tracking.TensorBoardLogger, tracking.MLflowLogger):
        assert issubclass(cls, Callback)
    t = tracking.Tracker("unused")
    assert t.stop_training is False and t.state_dict() == {} and t.on_epoch_begin(None, 0) is None
    code = "import sys, transferlab.tracking; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------- TensorBoard

def test_tensorboard_event_files_hold_every_epoch(small, tmp_path, capsys):
    pytest.importorskip("tensorboard", reason=EXTRA)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(small, epochs=3, fine_tune=0, lr=3e-3, trackers=["tensorboard"], run_dir=tmp_path, **FAST)
    assert "tensorboard: event files in" in capsys.readouterr().out
    tb = runfolder.tensorboard_dir(run.dir)

    def scalars(sub):
        ea = EventAccumulator(str(tb / sub)).Reload()
        return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}

    train_s, val_s = scalars("train"), scalars("validation")
    hist = run.history
    assert [s for s, _ in train_s["epoch_loss"]] == [1, 2, 3] == [s for s, _ in val_s["epoch_accuracy"]]
    assert [v for _, v in train_s["epoch_loss"]] == pytest.approx([r["train_loss"] for r in hist], rel=1e-6)
    assert [v for _, v in train_s["epoch_accuracy"]] == pytest.approx([r["train_acc"] for r in hist], rel=1e-6)
    assert [v for _, v in val_s["epoch_loss"]] == pytest.approx([r["val_loss"] for r in hist], rel=1e-6)
    assert [v for _, v in val_s["epoch_accuracy"]] == pytest.approx([r["val_acc"] for r in hist], rel=1e-6)
    assert [v for _, v in train_s["epoch_learning_rate"]] == pytest.approx([r["lr"] for r in hist], rel=1e-6)
    # the HParams dashboard: the options and the best validation figures, in RUN/tensorboard itself
    root = EventAccumulator(str(tb)).Reload()
    assert "_hparams_/experiment" in root.PluginTagToContent("hparams")
    best = {tag: root.Scalars(tag)[-1].value for tag in root.Tags()["scalars"]}
    assert best["hparams/best_val_acc"] == pytest.approx(max(r["val_acc"] for r in hist))
    assert best["hparams/best_val_loss"] == pytest.approx(min(r["val_loss"] for r in hist))
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = root.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model"].string_value == "cnn_base" and hparams["epochs"].number_value == 3
    assert hparams["lr"].number_value == pytest.approx(3e-3)


# ---------------------------------------------------------------- MLflow, against a real server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 with a SQLite store and its own artifact folder."""
    pytest.importorskip("mlflow", reason=EXTRA)
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.is_file() else "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
           str(root / "artifacts"), "--workers", "1"]
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


@pytest.fixture
def tracking_uri(mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "transferlab-tests")
    return mlflow_server


def _artifacts(client, run_id, path=None):
    for a in client.list_artifacts(run_id, path):
        if a.is_dir:
            yield from _artifacts(client, run_id, a.path)
        else:
            yield a.path


def test_mlflow_run_pipeline_logs_params_metrics_plots_and_the_exported_model(small, tmp_path, tracking_uri,
                                                                               monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    rc = main(["run", str(small), "--out", str(tmp_path / "out"), "--models", "cnn_base", "--epochs", "2",
               "--no-doctor", "--trackers", "mlflow", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    run_dir = tmp_path / "out" / "compare" / "runs" / "cnn_base"
    info = json.loads((run_dir / "tracking.json").read_text())
    assert info["tracking_uri"] == tracking_uri
    client = MlflowClient(tracking_uri)
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "cnn_base"
    assert client.get_experiment(run.info.experiment_id).name == "transferlab-tests"
    config = json.loads((run_dir / "config.json").read_text())
    params = run.data.params
    assert params["model"] == "cnn_base" and params["epochs"] == "2"
    assert params["batch_size"] == str(config["batch_size"]) and params["lr"] == str(config["lr"])
    assert params["split_counts.val"] == str(config["split_counts"]["val"])
    history = runfolder.read_history(run_dir)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        got = sorted((m.step, m.value) for m in client.get_metric_history(info["run_id"], key))
        assert [s for s, _ in got] == [r["epoch"] for r in history], key
        assert [v for _, v in got] == pytest.approx([r[key] for r in history], rel=1e-6), key
    metrics, _ = runfolder.read_metrics(run_dir, "val")
    assert run.data.metrics["eval-val/accuracy"] == pytest.approx(metrics["accuracy"])
    assert run.data.metrics["eval-val/f1_macro"] == pytest.approx(metrics["macro_avg"]["f1"])
    assert run.data.metrics["eval-val/ece_calibrated"] == pytest.approx(metrics["calibration"]["ece_after"])
    files = set(_artifacts(client, info["run_id"]))
    for f in ("config.json", "history.csv", "eval-val/metrics.json", "eval-val/history.png", "eval-val/roc.png",
              "eval-val/mistakes.png", "eval-val/confusion_matrix.png", "eval-val/reliability.png", "model/model.onnx", "model/model.json"):
        assert f in files, (f, sorted(files))
    # the exported model in MLflow is the file transferlab exported, byte for byte
    local = client.download_artifacts(info["run_id"], "model/model.onnx", str(tmp_path / "dl"))
    assert Path(local).read_bytes() == (run_dir / "export" / "model.onnx").read_bytes()


class Kill(Callback):
    def on_epoch_begin(self, trainer, epoch):
        if epoch == 3:
            raise KeyboardInterrupt


def test_mlflow_resume_continues_the_same_run(small, tmp_path, tracking_uri, capsys):
    from mlflow.tracking import MlflowClient

    kw = dict(epochs=4, trackers=["mlflow"], run_dir=tmp_path, **FAST)
    with pytest.raises(KeyboardInterrupt):
        train(small, callbacks=[Kill()], **kw)
    first = json.loads((tmp_path / "cnn_base" / "tracking.json").read_text())["run_id"]
    capsys.readouterr()
    run = train(small, resume=True, **kw)
    assert f"mlflow: continuing run {first}" in capsys.readouterr().out
    assert json.loads((run.dir / "tracking.json").read_text())["run_id"] == first
    client = MlflowClient(tracking_uri)
    steps = [m.step for m in client.get_metric_history(first, "val_loss")]
    assert sorted(steps) == [1, 2, 3, 4]  # one value per epoch across the kill
    assert client.get_run(first).info.status == "FINISHED"


def test_mlflow_server_down_is_one_line_before_the_first_epoch(small, tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason=EXTRA)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    rc = main(["train", str(small), "--model", "cnn_base", "--epochs", "1", "--input-size", "32", "--trackers", "mlflow",
               "--run-dir", str(tmp_path / "runs"), "--no-progress"])
    assert rc == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: --trackers mlflow: cannot start an MLflow run at http://127.0.0.1:") and "\n" not in err
    assert "epoch 1/1" not in captured.out and not (tmp_path / "runs" / "cnn_base").exists()
