"""The HTML pages come from the package's Jinja2 templates (transferlab._html), and every page escapes
what a user controls: a class name or file path holding ``<script>`` is shown, never run."""
from __future__ import annotations

import datetime
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from PIL import Image

from transferlab._html import environment, render

EVIL = "<script>alert('x')</script>"
PAGES = {"base.html", "doctor.html", "compare.html", "inspect.html", "tune.html"}
FRAGMENTS = {"nb_run.html", "nb_leaderboard.html", "nb_doctor.html"}  # notebook views (tests/test_notebook.py)
REPO = Path(__file__).resolve().parents[1]


def _shown_escaped(page: str) -> None:
    assert "<script" not in page, page[page.find("<script") - 200:page.find("<script") + 100]
    assert "&lt;script&gt;" in page


def _image(path: Path, colour=(200, 30, 30)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), colour).save(path)
    return str(path)


# ---------------------------------------------------------------- the templates

def test_templates_ship_with_the_package_and_render_with_minimal_context():
    folder = resources.files("transferlab") / "templates"
    assert {p.name for p in folder.iterdir() if p.name.endswith(".html")} == PAGES | FRAGMENTS
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "templates/*.html" in package_data["transferlab"]  # so a wheel carries them too
    assert environment().loader.list_templates() and environment() is environment()

    minimal = {
        "base.html": {},
        "doctor.html": {"report": {"root": "r", "classes": [], "counts": {"train": 0, "val": 0, "test": 0},
                                   "warnings": [], "summary": {"images": 0, "duplicate_groups": 0, "duplicate_images": 0,
                                                               "label_issues": 0, "outliers": 0},
                                   "settings": {"backbone": "b", "input_size": 32, "precision": "fp32", "threshold": 0.9,
                                                "folds": 5, "outlier_z": 3.5}},
                        "lines": [], "sections": [], "groups": [], "issues": [], "review": [], "outliers": [],
                        "thumbs": {}, "short": {}},
        "compare.html": {"info": {}, "sections": [], "rows": [], "ok": [], "plots": [], "best": None,
                         "metric_name": "accuracy", "columns": [], "not_ok": [], "generated": "now"},
        "inspect.html": {"report": {"root": "r", "layout": "folders", "num_classes": 0, "classes": [], "counts": {},
                                    "class_totals": {}, "totals": {"all": 0, "train": 0, "val": 0, "test": 0},
                                    "imbalance": {"ratio": None, "largest": {"class": "-", "images": 0},
                                                  "smallest": {"class": "-", "images": 0}},
                                    "image_size": {}, "formats": {}, "modes": {}, "broken": [], "duplicates": [],
                                    "leakage": 0},
                         "splits": [], "bars": "", "scatter": "", "samples": []},
        "tune.html": {"identity": {"model": "m", "data": "d", "seed": 0, "val_ratio": 0.2, "space": "head",
                                   "input_sizes": [32]},
                      "result": {"trials": {}}, "study": "s", "options": "{}", "best_json": "b", "history": None,
                      "importance": None, "params": [], "trials": []},
    }
    assert set(minimal) == PAGES
    for name, context in minimal.items():
        page = render(name, **context)
        assert page.startswith("<!doctype html>") and page.rstrip().endswith("</body></html>"), name
        assert "<script" not in page and "http" not in page, name
    assert "No trial has completed yet." in render("tune.html", **minimal["tune.html"])
    assert "nothing to report" in render("doctor.html", **minimal["doctor.html"])


def test_autoescape_is_on_for_html_templates():
    from markupsafe import Markup

    assert environment().from_string("{{ x }}{{ y }}").render(x=EVIL, y=Markup("<b>ok</b>")) == \
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;<b>ok</b>"
    assert environment().autoescape("doctor.html") is True


# ---------------------------------------------------------------- each page escapes

def test_doctor_page_escapes_paths_and_class_names(tmp_path):
    from transferlab.doctor import write_html

    root = tmp_path / "data"
    a = _image(root / "train" / EVIL.replace("/", "_") / "a.png")
    b = _image(root / "val" / "rose" / f"{EVIL.replace('/', '_')}.png", (30, 30, 200))
    c = _image(root / "train" / "rose" / "c.png", (30, 200, 30))
    s = {"images": 3, "duplicate_groups": 1, "duplicate_images": 2, "cross_split": 1, "conflicting_labels": 1,
         "label_issues": 1, "label_review": 0, "outliers": 1, "exact_groups": 0, "warnings": 1}
    report = {
        "root": str(root), "classes": [EVIL, "rose"], "counts": {"train": 2, "val": 1, "test": 0}, "summary": s,
        "settings": {"backbone": EVIL, "input_size": 32, "precision": "fp32", "threshold": 0.9, "folds": 5,
                     "outlier_z": 3.5},
        "warnings": [{"severity": "warning", "message": f"class {EVIL} is small"}],
        "duplicates": [{"id": 1, "kinds": ["cross-split", "conflicting-labels"], "exact": False,
                        "signals": ["embedding"], "similarity": 0.95, "size": 2,
                        "files": [{"path": a, "label": EVIL, "split": "train"}, {"path": b, "label": "rose", "split": "val"}]}],
        "label_issues": [{"path": b, "given": "rose", "p_given": 0.1, "suggested": EVIL, "p_suggested": 0.9,
                          "score": 0.1, "split": "val", "group": 1}],
        "outliers": [{"path": c, "label": "rose", "split": "train", "nearest": a, "nearest_similarity": 0.3,
                      "reason": f"unlike {EVIL}", "score": 5.0}],
        "label_rule": {"threshold": 0.2, "expected_false": 0.1, "disagreements": 1, "estimated_precision": 0.9},
    }
    page = write_html(report, tmp_path / "doctor.html").read_text()
    _shown_escaped(page)
    assert page.count('src="data:image/jpeg;base64,') == 5  # 2 in the group, the label issue, the outlier + nearest
    assert "<a href='#group-1'>#1</a>" in page and "id='group-1'" in page and "similarity 0.3" in page


def test_compare_page_escapes_model_names_and_paths(tmp_path):
    from transferlab.comparison.leaderboard import COLUMNS
    from transferlab.comparison.report import write_html

    png = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(png)
    rows = [dict({c: 0.5 for c in COLUMNS}, model=EVIL, status="ok", best=True, rank=1, run_dir=f"/runs/{EVIL}"),
            {"model": f"{EVIL}2", "status": "failed", "reason": f"boom {EVIL}"}]
    page = write_html(tmp_path, rows, "accuracy", {EVIL: png}, {EVIL: {"roc": png}}, {"data": f"/d/{EVIL}"},
                      [{"title": EVIL, "lines": [EVIL], "link": f"{EVIL}.html"}]).read_text()
    _shown_escaped(page)
    assert page.count('<img src="data:image/png;base64,') == 2
    assert f"Generated by transferlab on {datetime.date.today():%Y-%m-%d}" in page


def test_inspect_page_escapes_class_names(tmp_path):
    from transferlab.data import inspect_data, load_data, write_html

    root = tmp_path / "data"
    for k, cls in enumerate(("<script>", "rose")):
        for i in range(4):
            _image(root / cls / f"{i}.png", (k * 100 + i * 20, 40, 40))
    splits = load_data(root, val_ratio=0.25, progress=False, scan=True)
    assert "<script>" in splits.classes
    page = write_html(inspect_data(splits), splits, tmp_path / "report.html", samples_per_class=2).read_text()
    _shown_escaped(page)
    assert "<h3>&lt;script&gt;</h3><div class='row'><img" in page


def test_tune_page_escapes_model_data_and_parameters(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import CategoricalDistribution

    from transferlab.tune import report as tune_module  # write_report and the _plot it calls

    monkeypatch.setattr(tune_module, "_plot", lambda kind, study, path: None)
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={"head": EVIL}, value=0.5,
                                              distributions={"head": CategoricalDistribution([EVIL, "linear"])}))
    identity = {"model": EVIL, "data": f"/d/{EVIL}", "seed": 0, "val_ratio": 0.2, "space": "head", "input_sizes": [32]}
    result = {"trial": 0, "value": 0.5, "options": {"model": EVIL}, "trials": {"complete": 1}}
    page = tune_module.write_report(study, tmp_path, identity, result).read_text()
    _shown_escaped(page)
    assert '<tr class="best"><td>0</td><td>complete</td><td>0.5000</td>' in page
    assert "needs at least 2 completed trials" in page and "Trials: 1 complete." in page
