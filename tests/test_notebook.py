"""The example notebook (examples/seed_study.ipynb) runs top to bottom on tiny settings, and runs,
leaderboards and doctor reports render as HTML in Jupyter."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_notebook_runs_on_the_builtin_sample(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("TRANSFERLAB_EXAMPLE_FAST", "1")
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    nb = nbformat.read(ROOT / "examples" / "seed_study.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("transferlab-doctor" in h for h in html)        # the doctor's report
    assert any("transferlab-run" in h for h in html)           # a run
    assert any("transferlab-leaderboard" in h for h in html)   # the comparison
    assert (tmp_path / "seed-study" / "compare" / "report.html").is_file()
    assert list((tmp_path / "seed-study" / "compare" / "runs").rglob("model.onnx"))


def test_runs_boards_and_reports_render_escaped_html(tmp_path):
    from transferlab.comparison.leaderboard import Leaderboard
    from transferlab.doctor.render import DoctorReport
    from transferlab.training.run import Run

    run = Run(dir=tmp_path / "r<1>", config={"model": "cnn_bn"}, classes=["a", "b"],
              history=[{"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.6, "val_acc": 0.75,
                        "lr": 1e-3, "seconds": 1.2}])
    page = run._repr_html_()
    assert "run r&lt;1&gt;" in page and "<td style=\"text-align:right\">0.75</td>" in page
    board = Leaderboard([{"model": "<script>", "status": "ok", "rank": 1, "best": True, "accuracy": 0.9},
                         {"model": "x", "status": "failed", "reason": "boom"}], metric="accuracy")
    page = board._repr_html_()
    assert "&lt;script&gt;" in page and "<script>" not in page and "failed: boom" in page and "acc*" in page
    assert isinstance(board, list) and board[0]["model"] == "<script>"  # still the rows
    report = DoctorReport({"summary": {"images": 3, "duplicate_groups": 0, "exact_groups": 0, "cross_split": 0,
                                       "conflicting_labels": 0, "duplicate_images": 0, "label_issues": 0,
                                       "label_review": 0, "label_precision": None, "outliers": 0, "warnings": 0},
                           "root": "data", "label_rule": {}, "warnings": [], "broken": [], "settings": {"threshold": 0.95}})
    assert "data doctor" in report._repr_html_() and isinstance(report, dict)
