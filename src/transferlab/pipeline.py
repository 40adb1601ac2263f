"""The main job: inspect -> doctor -> (plan a budget) -> compare -> export the best -> report.

This is what ``transferlab run [DATA]`` does, and what the seed notebooks do by hand::

    from transferlab.pipeline import run_pipeline
    result = run_pipeline()                    # the built-in photo sample, the quick preset
    result = run_pipeline("photos/", budget=15 * 60)   # the best models that fit 15 minutes here
    print(result["best"]["model"], result["onnx"])

With no data it uses the built-in sample (2,400 real CIFAR-10 photos shipped with the package).
Transfer models whose pretrained weights cannot be had offline are skipped by ``compare`` with a
one-line reason.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from . import comparison as compare_stage
from . import doctor as doctor_stage
from . import exporter as export_stage
from . import runfolder
from ._atomic import atomic_write_text
from .budget import BudgetPlanner, nothing_fits
from .comparison.ensemble import NAME as ENSEMBLE
from .comparison.leaderboard import fmt, rank_rows
from .comparison.runner import check_requests
from .data import inspect_data, load_data
from .data.sample import sample_dir
from .errors import TransferlabError
from .tracking import log_export
from .training.config import TrainConfig

logger = logging.getLogger(__name__)


def run_pipeline(
    data: str | Path | None = None,
    *,
    out: str | Path = "transferlab-out",
    preset: str = "quick",
    models: list[str] | None = None,
    epochs: int | None = None,
    budget: float | None = None,
    doctor: bool = True,
    metric: str = "accuracy",
    export_format: str = "onnx",
    seed: int = 0,
    val_ratio: float = 0.2,
    progress: bool = True,
    trackers: list[str] | None = None,
    ensemble: bool = True,
    **train_kwargs: Any,
) -> dict[str, Any]:
    """Run the whole job and return a summary dict.

    ``budget`` (seconds): instead of the preset, train the models :func:`transferlab.budget.plan_budget`
    picks for this data on this machine, each stopped cleanly at its share. ``doctor``: run the data
    doctor (``OUT/doctor/doctor.html``, summarised in the report). ``trackers``: train's option
    (``["tensorboard", "mlflow"]``); with MLflow the exported best model is added to its run. ``ensemble``:
    compare's ensemble row (the best model when it wins: served as its ONNX graph). Messages go
    to the ``transferlab.pipeline`` logger.

    Returns ``{"data", "inspect", "doctor", "plan", "leaderboard", "best", "onnx", "report",
    "serve_command"}``.
    """
    rank_rows([], metric)  # a bad metric name fails now, not after the data scan
    if budget is not None and models:
        raise TransferlabError("give --budget or --models, not both: the budget picks the models")
    if models:  # a typo in a recipe name or a bad option is said now, not after inspect and the doctor
        options = {k: v for k, v in train_kwargs.items() if k in TrainConfig.__dataclass_fields__}
        check_requests(compare_stage.parse_models(models), options, epochs=epochs, seed=seed, val_ratio=val_ratio)
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run(out, data=data, val_ratio=val_ratio, seed=seed, preset=preset, models=models, epochs=epochs,
                    metric=metric, budget=budget, doctor=doctor, export_format=export_format, trackers=trackers,
                    progress=progress, ensemble=ensemble, train_kwargs=train_kwargs)
    except TransferlabError:
        if created:  # a job that failed in a folder it made leaves nothing behind (its caches stay reusable)
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(out: Path, *, data, val_ratio, seed, preset, models, epochs, metric, budget, doctor, export_format, trackers,
         progress, ensemble, train_kwargs) -> dict[str, Any]:
    # an earlier job's summary must not present a model as deployed if this job stops short of it
    # (e.g. the export fails its parity check: export raises ParityError and nothing is deployed)
    (out / "summary.json").unlink(missing_ok=True)
    if data is None:
        data = sample_dir()
        logger.info(f"no DATA given: using the built-in sample (2,400 real CIFAR-10 photos) at {data}")
    data = Path(data)
    steps = ["inspecting the data", *(["the data doctor"] if doctor else []),
             *(["planning the budget"] if budget is not None else []), "training and evaluating the models",
             "exporting the best model", "writing the report"]

    def step(what: str) -> None:
        logger.info(f"step {steps.index(what) + 1}/{len(steps)}: {what}")

    step("inspecting the data")
    splits = load_data(data, val_ratio=val_ratio, seed=seed, progress=progress)  # scanned once, used by every stage
    metric = "mAP" if splits.multilabel and metric == "accuracy" else metric  # multi-label: accuracy = subset acc.
    report = inspect_data(splits, val_ratio=val_ratio, seed=seed)
    atomic_write_text(out / "inspect.json", json.dumps(report, indent=2, default=str))
    n_broken = len(report.get("broken", []))
    logger.info(f"  {report['totals']['all']} images, {report['num_classes']} classes, imbalance ratio "
        f"{report['imbalance']['ratio']}" + (f", {n_broken} broken files skipped" if n_broken else ""))

    sections: list[dict[str, Any]] = []
    doctor_report = None
    if doctor:
        step("the data doctor")
        doctor_report = doctor_stage.diagnose(splits, out=out / "doctor", progress=progress)
        lines = doctor_stage.summary(doctor_report)
        for line in lines:
            logger.info(f"  {line}")
        sections.append({"title": "Data doctor", "lines": lines, "link": "../doctor/doctor.html"})

    planner = None
    if budget is not None:
        step("planning the budget")
        planner = BudgetPlanner(splits, budget, weights=train_kwargs.get("weights"))
        plan = planner.plan()
        for line in plan.explain():
            logger.info(f"  {line}")
        if not plan.choices:
            raise nothing_fits(budget, len(splits.train))

    step("training and evaluating the models")
    common = dict(preset=preset, out=out / "compare", epochs=epochs, metric=metric, seed=seed, val_ratio=val_ratio,
                  progress=progress, ensemble=ensemble, **({"trackers": trackers} if trackers else {}), **train_kwargs)
    if planner is None:
        logger.info(f"  models: {', '.join(compare_stage.parse_models(models))}" if models else f"  preset {preset}")
        rows = compare_stage.compare(splits, models=models, sections=sections, **common)
    else:
        rows = _train_on_budget(planner, splits, sections, common)
    ranked = [r for r in rows if r.get("status") == "ok" and r.get("run_dir")]
    if not ranked:
        raise TransferlabError("no model finished training; see the reasons above")
    best = ranked[0]

    step("exporting the best model")
    logger.info(f"  {best['model']} ({metric} {fmt(metric, best.get(metric))}) to {export_format}")
    best, exported = _export_best(ranked, export_format, splits)

    step("writing the report")
    report_html = out / "compare" / "report.html"
    serve_command = f"transferlab serve {best['run_dir']}"
    summary = {
        "data": str(data),
        "inspect": str(out / "inspect.json"),
        "doctor": str(out / "doctor" / "doctor.json") if doctor_report is not None else None,
        "plan": [{"model": c.label, "recipe": c.recipe, "kind": c.kind, "options": c.options, "seconds": c.seconds,
                  "real_seconds": c.real, "why": c.why} for c in planner.done] if planner else None,
        "metric": metric,  # what picked the best (mAP for multi-label data unless another was asked)
        "leaderboard": rows,
        "best": best,
        "onnx": str(exported),
        "report": str(report_html),
        "serve_command": serve_command,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def _export_best(ranked: list[dict], export_format: str, splits) -> tuple[dict, Path]:
    """Export the best row's run: ``(the row exported, the exported file)``. The ensemble is its ONNX graph
    already (built by compare); for another format the best single model is exported instead."""
    best = ranked[0]
    if best["model"] == ENSEMBLE and export_format == "onnx":
        exported = runfolder.export_dir(best["run_dir"]) / runfolder.ONNX_NAME
        logger.info(f"  the ensemble is its ONNX graph: {exported}")
        return best, exported
    if best["model"] == ENSEMBLE:
        best = next(r for r in ranked if r["model"] != ENSEMBLE)
        logger.info(f"  the ensemble exists as ONNX only: exporting {best['model']} to {export_format}")
    exported = export_stage.export(best["run_dir"], format=export_format, splits=splits)
    log_export(best["run_dir"], exported)  # to the best run's MLflow run (--trackers mlflow)
    return best, exported


def _train_on_budget(planner: BudgetPlanner, splits, sections: list[dict[str, Any]], common: dict) -> list[dict]:
    """Train the planner's next job until nothing more fits, re-planning after each model from the time
    really left; the report's "Budget plan" section says what ran, estimated and real."""
    labels: list[str] = []
    overrides: dict[str, dict] = {}
    rows: list[dict] = []
    while (job := planner.next()) is not None:
        labels.append(job.label)
        overrides[job.label] = job.override
        logger.info(f"  budget: {job.describe()}, {planner.left():.0f} s left: {job.why}")
        started = time.perf_counter()
        rows = compare_stage.compare(splits, models=labels, overrides=overrides,  # the ensemble once, at the end
                                     sections=[*sections, _plan_section(planner)], **{**common, "ensemble": False})
        planner.record(job, time.perf_counter() - started)
        logger.info(f"  budget: {job.label} took {job.real:.0f} s (estimated {job.seconds:.0f} s)")
    if labels:  # the report again, with the plan as it ended (every model is reused, none retrained)
        sections.append(_plan_section(planner))
        rows = compare_stage.compare(splits, models=labels, overrides=overrides, sections=sections, **common)
    return rows


def _plan_section(planner: BudgetPlanner) -> dict[str, Any]:
    return {"title": "Budget plan", "lines": planner.report().explain()}
