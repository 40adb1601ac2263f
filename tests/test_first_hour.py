"""What a new user meets in the first hour: errors said at once (no PyTorch import), a failed job that
leaves nothing behind, the epoch plan said up front, one line per epoch, hints that are true."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from transferlab import cli

ROOT = Path(__file__).resolve().parents[1]


def _cli(*argv: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter, reporting whether PyTorch got imported."""
    code = ("import sys; from transferlab.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv, message", [
    (["train", "/no/such/data"], "error: dataset path not found: /no/such/data"),
    (["run", "/no/such/data"], "error: dataset path not found: /no/such/data"),
    (["doctor", "/no/such/data"], "error: dataset path not found: /no/such/data"),
    (["compare", "/no/such/data"], "error: dataset path not found: /no/such/data"),
    (["tune", "/no/such/data"], "error: dataset path not found: /no/such/data"),
    (["evaluate", "/no/such/run"], "error: run not found: /no/such/run"),
    (["export", "/no/such/run"], "error: run not found: /no/such/run"),
    (["predict", "/no/such/run", "x.jpg"], "error: run not found: /no/such/run"),
])
def test_a_missing_path_is_one_line_before_pytorch_loads(argv, message):
    proc = _cli(*argv)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
    assert proc.stdout.strip() == "NO-TORCH"  # said in a fraction of a second, not after a 5 s import


def test_serve_refuses_a_bad_or_taken_port_in_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for port, message in (("99999", "--port must be 1-65535, got 99999"), ("0", "--port must be 1-65535, got 0")):
        proc = _cli("serve", str(run), "--port", port)
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}"
        assert proc.stdout.strip() == "NO-TORCH"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _cli("serve", str(run), "--port", str(port))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}:")


def test_a_failed_job_leaves_no_output_folder(tmp_path):
    from transferlab.errors import ConfigError, DataError
    from transferlab.pipeline import run_pipeline

    one = tmp_path / "one" / "only"
    one.mkdir(parents=True)
    from PIL import Image
    for i in range(4):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(one / f"{i}.png")
    out = tmp_path / "job"
    with pytest.raises(DataError, match="only one class"):
        run_pipeline(tmp_path / "one", out=out, doctor=False, progress=False)
    assert not out.exists()
    # a typo in a recipe name: said before any data is read
    with pytest.raises(ConfigError, match="mobilenet_v3x"):
        run_pipeline("/no/data/needed", out=out, models=["mobilenet_v3x"], progress=False)
    assert not out.exists()
    # a folder that was there before is the user's: left in place
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError):
        run_pipeline(tmp_path / "one", out=out, doctor=False, progress=False)
    assert (out / "keep.txt").read_text() == "mine"


def test_the_epoch_plan_is_said_before_training(digits_dir, tmp_path, capsys):
    from transferlab.training import train

    train(digits_dir, model="cnn_base", freeze="frozen", epochs=2, fine_tune=1, input_size=32,
          run_dir=tmp_path, progress=False)
    out = capsys.readouterr().out
    plan = "plan: 3 epochs: 2 training the head (backbone frozen), then 1 fine-tuning the whole network"
    assert plan in out and out.index(plan) < out.index("epoch 1/3")
    assert plan in (tmp_path / "cnn_base" / "train.log").read_text()


def test_an_interrupted_model_of_compare_says_to_run_the_command_again(monkeypatch):
    """compare (and run) resume an interrupted training by themselves: their hint is not `train --resume`."""
    from transferlab.comparison import runner
    from transferlab.training.api import RESUME_HINT

    seen = []
    monkeypatch.setattr(runner.train_stage, "train", lambda *a, **k: seen.append(RESUME_HINT.get()))
    runner._train_recipe(None, "cnn_base", Path("runs"), resume=False)
    assert seen and "run the same command again" in seen[0]
    assert RESUME_HINT.get() is None  # only while compare trains


def test_each_epoch_is_printed_once(monkeypatch):
    """The epoch's bar vanishes when it ends: its summary line follows."""
    from transferlab import _progress
    from transferlab.training import loop

    made = []
    real = _progress.make_progress
    monkeypatch.setattr(_progress, "enabled", lambda progress=None: progress is not False)
    monkeypatch.setattr(_progress, "make_progress", lambda *c, **k: made.append(k) or real(*c, **k))
    with loop._EpochBar("epoch 1/1", total=2, enabled=True) as bar:
        bar.update(2, loss=1.0, acc=0.5, lr=0.1, ips=10.0)
    assert made == [{"transient": True}]


def test_the_leaderboard_says_what_its_star_means(capsys):
    from rich.console import Console

    from transferlab.comparison import print_leaderboard

    rows = [{"model": "cnn_bn", "status": "ok", "rank": 1, "best": True, "accuracy": 0.9}]
    print_leaderboard(rows, "accuracy", console=Console(width=250))
    out = capsys.readouterr().out
    assert "acc*" in out and "the column marked *" in out


def test_run_ends_with_the_doctor_page(monkeypatch, tmp_path, capsys):
    import transferlab.pipeline as pipeline

    summary = {"leaderboard": [], "best": {"model": "cnn_bn", "accuracy": 0.9}, "onnx": "x.onnx",
               "report": "out/compare/report.html", "serve_command": "transferlab serve r",
               "doctor": str(tmp_path / "out" / "doctor" / "doctor.json")}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda *a, **k: summary)
    assert cli.main(["run", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"doctor:\s+\S*doctor/doctor\.html", out)


def test_readme_metrics_snippet_runs():
    text = (ROOT / "README.md").read_text()
    block = text[text.index("from transferlab.evaluation import compute_metrics"):]
    block = block[:block.index("```")]
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example


def test_no_stale_texts_and_packaged_files_exist(capsys):
    parser = cli.build_parser()
    helps = [p.format_help() for p in parser._subparsers._group_actions[0].choices.values()]
    helps.append(parser.format_help())
    assert not any("digits sample" in h or "(real handwritten digits) as class" in h for h in helps)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["package-data"]["transferlab"]:
        assert list((ROOT / "src" / "transferlab").glob(pattern)), pattern
    assert "not built yet" not in (ROOT / "src" / "transferlab" / "cli.py").read_text()


def test_labels_of_close_points_do_not_overlap(monkeypatch, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from transferlab.comparison import plots

    figs = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figs.append(fig) or Path(path))
    rows = [{"model": f"model_{i}_long_name", "status": "ok", "train_seconds": 100 + 3 * i,
             "accuracy": 0.80 + 0.002 * i, "best": i == 0} for i in range(6)]
    plots.plot_accuracy_vs_time(rows, tmp_path / "p.png")
    fig = figs[0]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    boxes = [t.get_window_extent(canvas.get_renderer()) for t in fig.axes[0].texts]
    assert len(boxes) == 6
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)


@pytest.mark.parametrize("options, message", [
    ({"epochs": -3}, "--epochs must be at least 1, got -3"),
    ({"input_size": 16}, "--input-size must be at least 32, got 16"),
    ({"device": "mps"}, "unknown --device 'mps': use auto, cpu, cuda, cuda:N"),
    ({"val_ratio": 1.5}, "--val-ratio must be in [0, 1), got 1.5"),
])
def test_one_rule_per_option_checked_when_the_config_is_built(options, message):
    """TrainConfig(epochs=-3) used to construct; the input size, device and val ratio rules now match
    create_model's, pick_device's and load_data's."""
    from transferlab.errors import ConfigError
    from transferlab.training.config import TrainConfig

    with pytest.raises(ConfigError) as err:
        TrainConfig(**options)
    assert str(err.value) == message
    assert TrainConfig(val_ratio=0).val_ratio == 0  # as load_data: a layout's own val/ folder only
    assert TrainConfig(device="cuda:1").device == "cuda:1"


def test_training_without_validation_images_is_one_clear_error(digits_dir, tmp_path):
    from transferlab.errors import DataError
    from transferlab.training import train

    with pytest.raises(DataError, match="no validation images"):
        train(digits_dir, model="cnn_base", epochs=1, val_ratio=0, input_size=32, run_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_models_listing_says_the_input_size_and_params_follow_the_data(capsys):
    """`models` showed cnn_base at 64 px / 294K parameters while a run on 32 px photos used 32 px / 337K."""
    assert cli.main(["models"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "train picks one for your images" in out and "follow the input size" in out


def test_the_models_listing_is_read_without_pytorch():
    """`transferlab models` took 9.4 s and 861 MB (PyTorch, timm, every backbone built)."""
    proc = _cli("models", "--json")
    assert proc.returncode == 0
    listing, torch_said = proc.stdout.rstrip().rsplit("\n", 1)
    assert torch_said == "NO-TORCH"
    rows = json.loads(listing)
    assert {r["name"] for r in rows} >= {"cnn_base", "mobilenet_v2", "efficientnet_lite0"}


def test_the_shipped_models_table_matches_the_registry():
    """The listing is a table shipped with the package; a recipe changed without rerunning
    tools/make_recipe_table.py fails here."""
    from transferlab.commands.models import live_rows, table_rows

    assert table_rows() == live_rows(), "the recipe table is stale: run python tools/make_recipe_table.py"
