"""The main job: inspect -> compare -> evaluate -> export the best -> report.

This is what ``transferlab run [DATA]`` does, and what the seed notebooks do by hand::

    import transferlab.pipeline as pl
    result = pl.run_pipeline()                 # the built-in sample, CPU-friendly preset
    print(result["best"]["model"], result["onnx"])

With no data it uses the built-in sample (scikit-learn's handwritten digits written out
as class folders). Transfer models whose pretrained weights cannot be had offline are
skipped by ``compare`` with a one-line reason.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import compare as compare_stage
from . import export as export_stage
from ._atomic import atomic_write_text
from .compare.leaderboard import rank_rows
from .data import inspect_data, load_data
from .data.sample import sample_dir
from .errors import TransferlabError


def run_pipeline(
    data: str | Path | None = None,
    *,
    out: str | Path = "transferlab-out",
    preset: str = "quick",
    models: list[str] | None = None,
    epochs: int | None = None,
    metric: str = "accuracy",
    export_format: str = "onnx",
    seed: int = 0,
    val_ratio: float = 0.2,
    progress: bool = True,
    console=None,
    log=print,
    **train_kwargs: Any,
) -> dict[str, Any]:
    """Run the whole job and return a summary dict.

    Returns ``{"data", "inspect", "leaderboard", "best", "onnx", "report", "serve_command"}``.
    """
    rank_rows([], metric)  # a bad metric name fails now, not after the data scan
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # an earlier job's summary must not present a model as deployed if this job stops short of it
    # (e.g. the export fails its parity check: export raises ParityError and nothing is deployed)
    (out / "summary.json").unlink(missing_ok=True)
    if data is None:
        data = sample_dir()
        log(f"no DATA given: using the built-in sample (real handwritten digits) at {data}")
    data = Path(data)

    log("[1/4] inspecting the data")
    splits = load_data(data, val_ratio=val_ratio, seed=seed, progress=progress)  # scanned once, used by every stage
    report = inspect_data(splits, val_ratio=val_ratio, seed=seed)
    atomic_write_text(out / "inspect.json", json.dumps(report, indent=2, default=str))
    n_broken = len(report.get("broken", []))
    log(
        f"      {report['totals']['all']} images, {report['num_classes']} classes, "
        f"imbalance ratio {report['imbalance']['ratio']}"
        + (f", {n_broken} broken files skipped" if n_broken else "")
    )

    log(f"[2/4] training and evaluating the models (preset {preset})")
    rows = compare_stage.compare(
        splits,
        models=models,
        preset=preset,
        out=out / "compare",
        epochs=epochs,
        metric=metric,
        seed=seed,
        val_ratio=val_ratio,
        progress=progress,
        console=console,
        **train_kwargs,
    )
    ranked = [r for r in rows if r.get("status") == "ok" and r.get("run_dir")]
    if not ranked:
        raise TransferlabError("no model finished training; see the reasons above")
    best = ranked[0]

    log(f"[3/4] exporting the best model ({best['model']}) to {export_format}")
    exported = export_stage.export(best["run_dir"], format=export_format, splits=splits)

    report_html = out / "compare" / "report.html"
    serve_command = f"transferlab serve {best['run_dir']}"
    summary = {
        "data": str(data),
        "inspect": str(out / "inspect.json"),
        "leaderboard": rows,
        "best": best,
        "onnx": str(exported),
        "report": str(report_html),
        "serve_command": serve_command,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    log("[4/4] done")
    return summary
