"""Train and evaluate several recipes on the same split, then rank them and write the report.

Layout of ``OUT`` (default ``compare/``)::

    OUT/runs/<recipe>/     one run folder per recipe (transferlab.train), with eval-val/ (evaluate)
    OUT/state.json         per recipe: status (trained / ok / skipped / failed), reason, the options
    OUT/plots/*.png        comparison plots
    OUT/leaderboard.csv, OUT/leaderboard.json, OUT/report.md, OUT/report.html

Resuming: a recipe whose training finished and whose evaluation was written with the same
options is reused, not retrained; a recipe whose training was interrupted continues from its
``last_state.pt``; ``retrain=True`` starts every recipe afresh.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import evaluation as evaluate_stage
from .. import runfolder
from .. import training as train_stage
from .._atomic import atomic_write_text
from ..data import DataSplits, load_data
from ..data.sample import sample_dir
from ..errors import ConfigError, TransferlabError, WeightsError
from ..models import get_recipe
from ..training.api import RESUME_HINT
from ..training.config import TrainConfig
from . import ensemble as ensemble_stage
from . import plots as cplots
from .leaderboard import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, SIGNIFICANCE, Leaderboard, add_statistics, make_row, \
    rank_rows, write_leaderboard
from .report import MODEL_PLOTS, write_html, write_markdown

logger = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    # CPU-friendly (the default job: about 5 minutes on the built-in sample, 2 cores): three rungs
    # of the from-scratch ladder and one transfer model with offline weights, each with its recipe's
    # own epochs
    "quick": {"models": ["cnn_base", "cnn_aug", "cnn_bn", "efficientnet_lite0"], "epochs": None},
    # the whole ladder and every transfer backbone (those without weights to be had are skipped)
    "full": {"models": ["cnn_base", "cnn_aug", "cnn_bn", "cnn_dropout", "resnet_scratch", "resnet34_scratch",
                        "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                        "efficientnet_b0", "densenet121", "xception"], "epochs": None},
}
STATE_FILE = "state.json"
# keyword arguments passed to train that do not change the model (not compared when resuming)
_NOT_OPTIONS = {"callbacks", "workers", "threads", "device", "cache", "progress"}


def parse_models(models: str | Iterable[str] | None) -> list[str] | None:
    """``"a,b,c"`` or a list -> a de-duplicated list of names (None when not given)."""
    if models is None:
        return None
    items = models.split(",") if isinstance(models, str) else list(models)
    out: list[str] = []
    for m in items:
        m = str(m).strip()
        if m and m not in out:
            out.append(m)
    if not out:
        raise ConfigError("--models is empty: give comma-separated recipe names, e.g. cnn_base,cnn_bn")
    return out


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return repr(v)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, TransferlabError) else f"{type(exc).__name__}: {msg}".rstrip(": ")


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_state(out: str | Path) -> dict[str, Any]:
    p = Path(out) / STATE_FILE
    if not p.is_file():
        return {"models": {}}
    try:
        state = json.loads(p.read_text(encoding="utf-8"))
    except ValueError:
        return {"models": {}}
    state.setdefault("models", {})
    return state


def _write_state(out: Path, state: dict[str, Any]) -> None:
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2))


def _trained(entry: Mapping | None, run_dir: Path, request: Mapping) -> bool:
    """The recipe's run finished training with exactly these options."""
    if not entry:
        return False
    return entry.get("request") == request and bool(entry.get("trained")) \
        and runfolder.checkpoint_path(run_dir, "best").is_file()


def _finished(entry: Mapping | None, run_dir: Path, request: Mapping, split: str) -> bool:
    """... and its evaluation on ``split`` was written."""
    if not entry:
        return False
    return _trained(entry, run_dir, request) and entry.get("status") == "ok" \
        and runfolder.metrics_path(run_dir, split).is_file()


def check_requests(names: Sequence[str], train_kwargs: Mapping[str, Any],
                   overrides: Mapping[str, Mapping[str, Any]] | None = None, **common) -> None:
    """Every recipe name and training option is valid for every recipe, before the first model trains
    (a ConfigError naming the problem; unknown names list the known recipes)."""
    for name in names:
        options = {"model": name, **common, **train_kwargs, **((overrides or {}).get(name) or {})}
        recipe = get_recipe(options["model"])
        try:
            TrainConfig(run_dir="runs", **options).resolve(recipe.defaults)
        except TypeError as exc:  # an option train() does not know
            raise ConfigError(f"unknown training option: {exc}") from None


def compare(
    data=None,
    models: str | Sequence[str] | None = None,
    preset: str = "quick",
    out: str | Path = "compare",
    epochs: int | None = None,
    *,
    metric: str = "accuracy",
    split: str = "val",
    seed: int = 0,
    val_ratio: float = 0.2,
    retrain: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    sections: Sequence[Mapping[str, Any]] | None = None,
    eval_batch_size: int = 64,
    ensemble: bool = True,
    progress: bool = True,
    **train_kwargs,
) -> list[dict[str, Any]]:
    """Train (or reuse) each recipe on one split, evaluate it, rank them and write the report.

    ``data``: a dataset folder (default: the built-in sample, real CIFAR-10 photos) or a ``DataSplits``.
    ``models``: recipe names (list or ``"a,b,c"``); default: the ``preset``'s (``"quick"`` or
    ``"full"``, see :data:`PRESETS`). ``epochs``: default each recipe's own. Other keyword arguments
    go to ``transferlab.train`` (``batch_size``, ``lr``, ``input_size``, ...) for every recipe;
    ``overrides`` maps a recipe to options for it alone (``{"efficientnet_lite2": {"fine_tune": 8}}``,
    as ``run --budget`` plans them); an entry with a ``"model"`` option names a variant, trained from
    that recipe into its own run folder (``{"efficientnet_lite0-frozen": {"model": "efficientnet_lite0",
    "freeze": "frozen"}}``). Every name and option is checked before the first model
    trains. ``ensemble``: add an ``ensemble`` row when averaging some of the models beats the best one on
    validation (:mod:`.ensemble`: chosen on the validation split, one ONNX graph in ``OUT/runs/ensemble``,
    predicted and served like a run). ``sections`` (``{"title", "lines", "link"}`` each) are shown in the report above the
    leaderboard, as ``transferlab run`` does with the data doctor's summary. A recipe that cannot
    get pretrained weights is skipped, one that fails is reported; neither stops the others.
    Returns the leaderboard rows (best first), also written to ``OUT/leaderboard.json``.
    """
    names, epochs, overrides = _checked_options(models, preset, epochs, metric, overrides, train_kwargs,
                                                seed=seed, val_ratio=val_ratio)
    if data is None:
        data = sample_dir()
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    splits = _load_splits(data, split, val_ratio=val_ratio, seed=seed, progress=progress)
    if splits.multilabel:
        if metric == "accuracy":  # the default: multi-label rows rank by mAP (their accuracy is subset accuracy)
            metric = "mAP"
        if ensemble and len(names) > 1:
            logger.info("ensemble: not built for multi-label data (its selection averages single-label probabilities)")
        ensemble = False
    state = read_state(out)
    state.update({"sections": [dict(sec) for sec in (sections or [])]})
    state.update({"data": str(splits.root), "split": split, "metric": metric,
                  "preset": preset if models is None else None, "epochs": epochs})
    job = _Comparison(out, state, splits, split, seed=seed, val_ratio=val_ratio, retrain=retrain,
                      eval_batch_size=eval_batch_size, progress=progress, total=len(names))
    for i, name in enumerate(names, 1):
        job.recipe(i, name, {"epochs": epochs, **train_kwargs, **overrides.get(name, {})})
    if ensemble and len(names) > 1 and job.ensemble(names):
        names = [*names, ensemble_stage.NAME]
    state["order"] = names
    _write_state(out, state)
    return write_report(out, metric=metric, models=names)


def _checked_options(models, preset: str, epochs: int | None, metric: str, overrides, train_kwargs: Mapping,
                     **common) -> tuple[list[str], int | None, dict[str, dict[str, Any]]]:
    """The recipe names, the epochs and the per-recipe overrides, every one checked (ConfigError)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}: choose from {', '.join(PRESETS)}")
    rank_rows([], metric)  # validates the metric name before any training
    names = parse_models(models) or list(PRESETS[preset]["models"])
    epochs = epochs if epochs is not None else PRESETS[preset]["epochs"]
    if epochs is not None and int(epochs) < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}")
    overrides = {name: dict(o) for name, o in (overrides or {}).items()}
    unknown = sorted((set(train_kwargs) | {k for o in overrides.values() for k in o})
                     - set(TrainConfig.__dataclass_fields__) - _NOT_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
    check_requests(names, {k: v for k, v in train_kwargs.items() if k not in _NOT_OPTIONS},
                   overrides, epochs=epochs, **common)
    return names, epochs, overrides


def _load_splits(data, split: str, *, val_ratio: float, seed: int, progress: bool) -> DataSplits:
    """The one split every recipe trains on, with images in ``split`` (the one evaluated)."""
    if split not in ("val", "test"):
        raise ConfigError(f"unknown --split {split!r}: choose val or test")
    splits = data if isinstance(data, DataSplits) else load_data(data, val_ratio=val_ratio, seed=seed, progress=progress)
    if not splits.split(split):
        raise ConfigError(f"{splits.root} has no {split} images (layout {splits.layout}); use --split val")
    return splits


@dataclass
class _Comparison:
    """What the recipes of one :func:`compare` share: ``OUT`` and its state (written after every
    step, so an interrupted compare resumes), the split, and how to train and evaluate."""

    out: Path
    state: dict[str, Any]
    splits: DataSplits
    split: str
    seed: int
    val_ratio: float
    retrain: bool
    eval_batch_size: int
    progress: bool
    total: int

    def save(self) -> None:
        _write_state(self.out, self.state)

    def recipe(self, i: int, name: str, options: dict[str, Any]) -> None:
        """Train (or reuse, or resume) recipe ``name`` and evaluate it; a recipe without weights is
        recorded as skipped, one that fails as failed (neither stops the others)."""
        entries = self.state["models"]
        run_dir = self.out / "runs" / name
        request = _jsonable({"seed": self.seed, "val_ratio": self.val_ratio,
                             **{k: v for k, v in options.items() if k not in _NOT_OPTIONS}})
        entry = entries.get(name)
        if not self.retrain and _finished(entry, run_dir, request, self.split):
            logger.info(f"[{i}/{self.total}] {name}: finished earlier, reusing {run_dir}")
            return
        try:
            if self.retrain or not _trained(entry, run_dir, request):
                resume = not self.retrain and bool(entry) and entry.get("request") == request
                self.train(f"[{i}/{self.total}] {name}", name, options, request, resume=resume)
            logger.info(f"[{i}/{self.total}] {name}: evaluating on {self.split}")
            evaluate_stage.evaluate(run_dir, data=self.splits, split=self.split, batch_size=self.eval_batch_size,
                                    progress=self.progress)
            entries[name] = {**entries[name], "status": "ok", "reason": ""}
        except KeyboardInterrupt:
            self.save()
            raise
        except WeightsError as exc:
            entries[name] = {"status": "skipped", "reason": _one_line(exc), "request": request}
            logger.warning(f"{name}: skipped - {_short(entries[name]['reason'])}")
        except Exception as exc:  # one failing recipe never loses the others
            prev = entries.get(name) or {}
            trained = _trained(prev, run_dir, request)
            entries[name] = {**prev, "status": "failed", "trained": trained, "request": request,
                             "reason": ("evaluation failed: " if trained else "") + _one_line(exc)}
            logger.error(f"{name}: failed - {_short(entries[name]['reason'])}")
        self.save()

    def ensemble(self, names: list[str]) -> bool:
        """Build the ensemble of the evaluated recipes (their validation split evaluated first when the
        compared split is another); True when one was built. A failure is logged and recorded, never
        fatal: the models' rows stand."""
        entries = self.state["models"]
        entries.pop(ensemble_stage.NAME, None)
        runs = {n: self.out / "runs" / n for n in names if (entries.get(n) or {}).get("status") == "ok"}
        if len(runs) < 2:
            return False
        logger.debug(f"ensemble: choosing members among {len(runs)} models on the validation split")
        try:
            for run_dir in runs.values():  # the members' validation predictions and temperatures
                if self.split != "val":
                    evaluate_stage.evaluate(run_dir, data=self.splits, split="val", batch_size=self.eval_batch_size,
                                            plots=False, progress=self.progress)
            entry = ensemble_stage.build_ensemble(runs, self.splits, self.out / "runs", self.split)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the ensemble is a bonus: its failure never loses the models' rows
            logger.error(f"ensemble: failed - {_short(_one_line(exc))}")
            self.state.setdefault("notes", []).append(f"ensemble failed: {_one_line(exc)}")
            return False
        if entry is None:
            return False
        entries[ensemble_stage.NAME] = entry
        self.save()
        return True

    def train(self, tag: str, name: str, options: dict[str, Any], request: dict, *, resume: bool) -> None:
        """Train recipe ``name`` into ``OUT/runs/name``, recorded in the state before (so that an
        interrupted compare resumes this training next time) and after, with its wall time."""
        entries = self.state["models"]
        logger.info(f"{tag}: training" + (" (resuming)" if resume else ""))
        entries[name] = {"status": "training", "trained": False, "reason": "", "request": request}
        self.save()
        t0 = time.perf_counter()
        _train_recipe(self.splits, name, self.out / "runs", resume=resume, seed=self.seed, val_ratio=self.val_ratio,
                      progress=self.progress, **options)
        entries[name] = {"status": "trained", "trained": True, "reason": "", "request": request,
                         "train_wall_seconds": time.perf_counter() - t0}
        self.save()


def _train_recipe(splits, name: str, runs_dir: Path, *, resume: bool, **options):
    """Train one recipe into ``runs_dir/name``: resumed when asked and possible, else from scratch."""
    common = dict(run_dir=str(runs_dir), name=name, **{"model": name, **options})
    token = RESUME_HINT.set("to continue, run the same command again: the finished models are reused and this "
                            "one resumes after its last saved epoch")
    try:
        if resume:
            try:
                return train_stage.train(splits, resume=True, **common)
            except ConfigError:  # a folder that cannot be resumed (no state saved yet): start again
                pass
        return train_stage.train(splits, overwrite=True, **common)
    finally:
        RESUME_HINT.reset(token)


def collect_rows(out: str | Path, models: Sequence[str] | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """Leaderboard rows (unranked) for the recipes of ``OUT`` from their run folders and state."""
    out = Path(out)
    state = read_state(out)
    split = split or state.get("split", "val")
    entries = state.get("models", {})
    names = list(models) if models is not None else list(state.get("order") or entries)
    runs_dir = out / "runs"
    if models is None and runs_dir.is_dir():  # run folders not in the state (copied in, older compare)
        names += sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and p.name not in names)
    rows = []
    for name in names:
        entry = entries.get(name) or {}
        run_dir = runs_dir / name
        mpath = runfolder.metrics_path(run_dir, split)
        status = entry.get("status")
        if status in ("skipped", "failed", "training"):
            reason = entry.get("reason", "") if status != "training" else "training was interrupted (run compare again to resume)"
            rows.append(make_row(name, None, status="skipped" if status == "skipped" else "failed",
                                 reason=reason, run=run_dir))
            continue
        if not mpath.is_file():
            rows.append(make_row(name, None, status="failed", run=run_dir,
                                 reason=entry.get("reason") or f"not evaluated yet (no {mpath.relative_to(out)})"))
            continue
        metrics, reason = runfolder.read_metrics(run_dir, split)
        if metrics is None:
            assert reason is not None, "read_metrics says why it has no metrics"
            rows.append(make_row(name, None, status="failed", run=run_dir, reason=reason))
            continue
        rows.append(make_row(name, metrics, runfolder.read_history(run_dir), run=run_dir,
                             train_seconds=entry.get("train_wall_seconds")))
    return rows


#: how the leaderboard's intervals and tests are computed (recorded in leaderboard.json)
STATISTICS = {"intervals": f"95% percentile bootstrap over the evaluated images ({BOOTSTRAP_RESAMPLES} resamples, "
                           f"seed {BOOTSTRAP_SEED})",
              "test": f"exact McNemar test (two-sided binomial on the discordant images) of each model against "
                      f"the rank-1 model; significant below p={SIGNIFICANCE}",
              "resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "level": 0.95, "alpha": SIGNIFICANCE}


def write_report(out: str | Path = "compare", *, metric: str | None = None, models: Sequence[str] | None = None,
                 split: str | None = None) -> list[dict[str, Any]]:
    """(Re)write ``OUT``'s leaderboard, plots and reports from the run folders already there.

    Needs no training: ``transferlab compare --report-only --out OUT`` calls this. Returns the
    ranked rows.
    """
    out = Path(out)
    state = read_state(out)
    if not state.get("models") and not (out / "runs").is_dir():
        raise ConfigError(f"nothing to report in {out}: no state.json or runs/ (run transferlab compare first)")
    metric = metric or state.get("metric", "accuracy")
    split = split or state.get("split", "val")
    rows = Leaderboard(rank_rows(collect_rows(out, models, split), metric), metric=metric)
    add_statistics(rows, {r["model"]: runfolder.read_predictions(r["run_dir"], split) for r in rows
                          if r["status"] == "ok" and r.get("run_dir")})
    write_leaderboard(rows, out, metric, statistics=STATISTICS)

    ok = [r for r in rows if r["status"] == "ok"]
    plot_dir = out / "plots"
    plots: dict[str, Path] = {}
    histories = {r["model"]: runfolder.read_history(r["run_dir"]) for r in ok}

    def attempt(key, fn, *args):
        try:
            plots[key] = fn(*args)
        except Exception as exc:  # pragma: no cover - a plot never loses the leaderboard
            state.setdefault("notes", []).append(f"{key} plot failed: {exc}")

    if ok:
        attempt("val_curves", cplots.plot_val_curves, histories, plot_dir / "val_curves.png")
        attempt("accuracy_vs_time", cplots.plot_accuracy_vs_time, rows, plot_dir / "accuracy_vs_time.png", metric
                if metric in ("accuracy", "mAP", "precision_macro", "recall_macro", "f1_macro", "auc_macro") else "accuracy")
        per_class = {}
        for r in ok:
            m, _ = runfolder.read_metrics(r["run_dir"], split)
            per_class[r["model"]] = (m or {}).get("per_class", {})
        classes = list(next(iter(per_class.values())).keys()) if per_class else []
        def f1_of(model, cls):
            v = (per_class[model].get(cls) or {}).get("f1")
            return np.nan if v is None else float(v)

        f1 = np.array([[f1_of(m, c) for c in classes] for m in per_class])
        if classes:
            attempt("f1_heatmap", cplots.plot_f1_heatmap, list(per_class), classes, f1, plot_dir / "f1_heatmap.png")
    model_plots = {}
    for r in ok:
        eval_dir = runfolder.eval_dir(r["run_dir"], split)
        model_plots[r["model"]] = {k: eval_dir / f"{k}.png" for k in MODEL_PLOTS if (eval_dir / f"{k}.png").is_file()}
    info = {"data": state.get("data"), "split": split, "preset": state.get("preset"), "epochs": state.get("epochs"),
            "models": f"{len(ok)} evaluated of {len(rows)}", "sorted by": metric}
    sections = state.get("sections") or []
    write_html(out, rows, metric, plots, model_plots, info, sections)
    write_markdown(out, rows, metric, plots, info, sections, model_plots)
    return rows
