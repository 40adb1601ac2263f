"""A search's outputs: a line per finished trial, and ``best.json``, ``summary.json`` and ``report.html``
(with Optuna's optimisation history and parameter importances) in ``OUT``."""
from __future__ import annotations

import base64
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from .._atomic import atomic_write, atomic_write_text, write_json
from .._html import render
from .study import STUDY_FILE, finished, finished_complete

logger = logging.getLogger("transferlab.tune")


class TrialLine:
    """Optuna callback: one line per finished trial (its params, result, time and the best so far).

    ``trials``: the finished trials the study should have (shown as ``[done/trials]``), or None.
    """

    def __init__(self, trials: int | None):
        self.trials = trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        shown = " ".join(f"{k}={fmt(v)}" for k, v in trial.params.items())
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        of = f"/{self.trials}" if self.trials else ""
        n_done = len(finished(study))
        if trial.state == optuna.trial.TrialState.COMPLETE:
            result = f"val_acc {trial.value:.4f}"
        elif trial.state == optuna.trial.TrialState.PRUNED:
            result = f"pruned at epoch {trial.user_attrs.get('pruned_at', '?')}"
        else:
            result = str(trial.state.name).lower()
        best = (f"best {study.best_value:.4f} (trial {study.best_trial.number})"
                if finished_complete(study) else "best -")
        feats = trial.user_attrs.get("feature_seconds")
        took = f"{seconds:.1f}s" + (f" (features {feats:.1f}s)" if feats else "")
        logger.info(f"trial {trial.number} [{n_done}{of}]  {shown}  {result}  {took}  {best}")


def write_results(study: optuna.Study, out: Path, identity: dict[str, Any], feature_seconds: dict[str, float],
                  options: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """``out/best.json`` (the best trial's train options, when a trial completed; ``options`` gives them
    from its params when it did not record them), ``report.html`` and ``summary.json``: the result."""
    counts = {s.name.lower(): sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState}
    result: dict[str, Any] = {"value": None, "params": None, "trial": None, "options": None, "best_json": None,
                              "report": None, "study": str(out / STUDY_FILE),
                              "trials": {k: v for k, v in counts.items() if v},
                              "feature_seconds": dict(feature_seconds)}
    if finished_complete(study):
        best = study.best_trial
        best_options = best.user_attrs.get("options") or options(best.params)
        write_json(out / "best.json", best_options)
        result.update(value=float(study.best_value), params=dict(best.params), trial=best.number, options=best_options,
                      best_json=str(out / "best.json"))
    result["report"] = str(write_report(study, out, identity, result))
    write_json(out / "summary.json", result)
    return result


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _plot(kind: str, study: optuna.Study, path: Path) -> str | None:
    """Optuna's matplotlib plot saved as PNG; None (and a note) when it cannot be drawn yet."""
    # pyplot and Optuna's matplotlib plots (~0.4 s to import) only when a plot is drawn, after choosing Agg
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("optuna").setLevel(logging.ERROR)
        try:
            ax = (ovm.plot_optimization_history(study) if kind == "history"
                  else ovm.plot_param_importances(study))
        except Exception:  # noqa: BLE001 - too few trials for importances, or a plot bug: the report says so
            plt.close("all")
            return None
    fig = ax.figure
    assert isinstance(fig, Figure), "optuna draws its plots on a figure of their own"
    fig.set_size_inches(7.5, 4.2)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_report(study: optuna.Study, out: Path, identity: dict, result: dict) -> Path:
    """OUT/report.html (self-contained): the best options, Optuna's history and importance plots,
    the trials table."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    history = _plot("history", study, out / "history.png") if complete else None
    importance = _plot("importance", study, out / "importance.png") if len(complete) >= 2 else None
    rows = sorted(study.trials, key=lambda t: (t.value is None, -(t.value or 0.0), t.number))
    names = sorted({k for t in study.trials for k in t.params})
    trials = [{"number": t.number, "state": t.state.name.lower(), "best": result.get("trial") == t.number,
               "value": f"{t.value:.4f}" if t.value is not None else "",
               "seconds": f"{t.duration.total_seconds():.1f}" if t.duration else "",
               "params": [fmt(t.params[n]) if n in t.params else "" for n in names]} for t in rows]
    page = render("tune.html", identity=identity, result=result, study=str(out / STUDY_FILE),
                  options=json.dumps(result.get("options"), indent=2), best_json=str(out / "best.json"),
                  history=history, importance=importance, params=names, trials=trials)
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
