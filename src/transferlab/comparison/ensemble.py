"""Ensembles: greedy ensemble selection on the validation split, built into one ONNX graph.

``compare`` (and ``run``) add an ``ensemble`` row when averaging some of its models beats the best
one on validation. Members are chosen by greedy forward selection with replacement (Caruana et al.,
2004) on the members' calibrated validation probabilities, minimising the log loss: start from the
best model, then repeatedly add the model (again, if it helps) that lowers the averaged log loss
most, stopping when none does or after ``MAX_ROUNDS``. A member's weight is how often it was picked.
Each model is a candidate twice, as it is and with test-time augmentation (its probabilities averaged
with the mirror image's; ``name+tta``), so TTA is used where it lowers the validation log loss.
The validation split chooses; the compared split only scores (with ``--split val`` the ensemble is
scored on the split that chose it, and its row says so).

The ensemble is a run folder of its own, ``OUT/runs/ensemble``, holding only its export:
``export/model.onnx`` is one graph with one input (the photo as ``[B, 3, S, S]`` pixels in [0, 1],
``S`` the largest member input size) that resizes and normalises the input for each member, runs
it, and averages the members' calibrated probabilities (output: their log, so a softmax gives them
back); ``export/model.json`` carries the classes, the members and their weights, and the ensemble's
own temperature and "unknown" rule fitted on validation. ``predict`` and ``serve`` use it like any
exported run. It is evaluated through that graph, on the compared split, into ``eval-<split>/``
like a model (metrics, predictions, ms/image).

>>> import numpy as np
>>> labels = np.array([0, 1, 0, 1])
>>> a = np.array([[.9, .1], [.6, .4], [.8, .2], [.6, .4]])     # right on 0s, wrong on 1s
>>> b = np.array([[.4, .6], [.1, .9], [.4, .6], [.2, .8]])     # the other way round
>>> greedy_selection([a, b], labels)                           # together they beat either alone
[1, 1]
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import ood, runfolder
from .._atomic import atomic_write_text
from ..checkpoint import load_model
from ..data import ImageDataset
from ..evaluation import compute_metrics
from ..evaluation.api import predict_logits, write_predictions
from ..evaluation.calibration import calibrated_probs, fit_temperature, nll
from ..exporter import export_onnx_graph, parity_check
from ..runtime import Preprocess, ort_probs, ort_session

logger = logging.getLogger(__name__)

NAME = "ensemble"
MAX_ROUNDS = 10


def greedy_selection(val_probs: list[np.ndarray], labels, rounds: int = MAX_ROUNDS) -> list[int]:
    """How often each model is picked (its weight) by greedy forward selection with replacement on
    ``val_probs`` (one ``[N, C]`` array per model, same images and order), minimising the log loss of
    the average; the best single model first, at most ``rounds`` picks, stopping when no pick helps."""
    labels = np.asarray(labels, np.int64)
    counts = [0] * len(val_probs)
    total = np.zeros_like(np.asarray(val_probs[0], np.float64))
    best = np.inf
    for _ in range(max(1, int(rounds))):
        n = sum(counts) + 1
        losses = [nll((total + p) / n, labels) for p in val_probs]
        i = int(np.argmin(losses))
        if losses[i] >= best - 1e-9:
            break
        best, counts[i], total = losses[i], counts[i] + 1, total + val_probs[i]
    return counts


class EnsembleModule(nn.Module):
    """Members' calibrated probabilities, weighted and averaged, from one ``[B, 3, S, S]`` input of
    pixels in [0, 1]; each member gets the input resized to its own size and normalised its own way.
    Returns the log of the average (a softmax of it gives the average back)."""

    def __init__(self, members: list[nn.Module], cfgs: list[dict], temperatures: list[float], weights: list[float],
                 input_size: int, mirrors: list[bool] | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        # test-time augmentation per member: its probabilities averaged with the mirror image's
        self.mirrors = [bool(m) for m in (mirrors or [False] * len(members))]
        self.sizes = [int(c["input_size"]) for c in cfgs]
        self.input_size = int(input_size)
        for i, c in enumerate(cfgs):
            self.register_buffer(f"mean{i}", torch.tensor(c["mean"], dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer(f"std{i}", torch.tensor(c["std"], dtype=torch.float32).view(1, 3, 1, 1))
        self.temperatures = [float(t) for t in temperatures]
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = None
        for i, member in enumerate(self.members):
            xi = x if self.sizes[i] == self.input_size else F.interpolate(
                x, size=(self.sizes[i], self.sizes[i]), mode="bilinear", align_corners=False)
            xi = (xi - getattr(self, f"mean{i}")) / getattr(self, f"std{i}")
            if self.mirrors[i]:
                z = member(torch.cat([xi, xi.flip(-1)])) / self.temperatures[i]
                n = xi.shape[0]
                p = (torch.softmax(z[:n], dim=1) + torch.softmax(z[n:], dim=1)) * (0.5 * self.weights[i])
            else:
                p = torch.softmax(member(xi) / self.temperatures[i], dim=1) * self.weights[i]
            avg = p if avg is None else avg + p
        assert avg is not None
        return torch.log(avg.clamp_min(1e-12))


def ensemble_data_cfg(cfgs: list[dict]) -> dict:
    """The ensemble's preprocessing: the largest member's (its load size, crop and resize mode), without
    normalisation (the graph normalises for each member)."""
    big = max(cfgs, key=lambda c: int(c["input_size"]))
    return {**big, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


def _calibrated_val_probs(run: Path, paths: list[str]) -> tuple[np.ndarray, float] | None:
    """A run's calibrated validation probabilities in the order of ``paths`` (from eval-val/) and its
    temperature; None when either is missing or the file does not cover ``paths``."""
    rows, cal = runfolder.read_probabilities(run, "val"), runfolder.read_calibration(run)
    if rows is None or cal is None or any(p not in rows for p in paths):
        return None
    raw = np.array([rows[p] for p in paths], np.float64)
    t = float(cal["temperature"])
    return calibrated_probs(np.log(np.clip(raw, 1e-30, None)), t), t


def _tta_val_probs(run: Path, val: list, temperature: float, batch_size: int = 64) -> np.ndarray:
    """A run's calibrated validation probabilities with test-time augmentation: ``softmax(z / T)`` of
    each image and of its mirror image, averaged (what the ensemble graph computes for a TTA member)."""
    model, meta = load_model(run)
    logits, _ = predict_logits(model, ImageDataset(val, dict(meta["data_cfg"])), len(meta["classes"]),
                               batch_size=batch_size, workers=None, tta=True, desc=f"{run.name} with TTA (val)",
                               progress=False)
    return calibrated_probs(logits, temperature)  # [N, 2, C] -> each view calibrated, then averaged


def _candidates(runs: dict[str, Path], val: list, tta: bool) -> tuple[list[np.ndarray], list[tuple[str, bool]], dict]:
    """The selection's candidates: each run's calibrated validation probabilities, and (``tta``) the
    same run with test-time augmentation as a candidate of its own; ``(probs, (name, tta) keys,
    temperatures by name)``."""
    probs, keys, temperature = [], [], {}
    for name, run in runs.items():
        found = _calibrated_val_probs(run, [p for p, _ in val])
        if found is None:
            continue
        probs.append(found[0])
        keys.append((name, False))
        temperature[name] = found[1]
        if tta:
            probs.append(_tta_val_probs(run, val, found[1]))
            keys.append((name, True))
    return probs, keys, temperature


def member_name(name: str, tta: bool) -> str:
    """How a member is named in the state and model.json: the model, ``+tta`` with test-time augmentation."""
    return f"{name}+tta" if tta else name


def build_ensemble(runs: dict[str, Path], splits, out_runs: Path, split: str, *, tta: bool = True) -> dict | None:
    """Choose members among ``runs`` (name -> run folder, each evaluated on ``val``) on the validation
    split (``tta``: each model also with test-time augmentation, a candidate of its own, kept where it
    lowers the log loss); when more than one model is kept, write ``out_runs/ensemble`` (export +
    evaluation on ``split``) and return its state entry (``members``, ...), else None."""
    val = [(p, y) for p, y in splits.val]
    labels = np.array([y for _, y in val], np.int64)
    probs, keys, temperature = _candidates(runs, val, tta)
    if len(temperature) < 2:
        return None
    counts = greedy_selection(probs, labels)
    chosen = {k: c for k, c in zip(keys, counts) if c}
    single = {member_name(*k): nll(p, labels) for k, p in zip(keys, probs)}
    if len({name for name, _ in chosen}) < 2:
        kept = ", ".join(member_name(*k) for k in chosen)
        logger.info(f"ensemble: the greedy selection on validation kept only {kept}: no ensemble row")
        return None
    avg = np.sum([c * p for c, p in zip(counts, probs)], axis=0) / sum(counts)
    folder = out_runs / NAME
    export_dir = runfolder.export_dir(folder)
    export_dir.mkdir(parents=True, exist_ok=True)
    loaded = {name: load_model(runs[name]) for name in dict.fromkeys(name for name, _ in chosen)}
    models = [loaded[name][0].eval() for name, _ in chosen]
    cfgs = [dict(loaded[name][1]["data_cfg"]) for name, _ in chosen]
    temps = [temperature[name] for name, _ in chosen]
    cfg = ensemble_data_cfg(cfgs)
    num_params = int(sum(q.numel() for m, _ in loaded.values() for q in m.parameters()))
    module = EnsembleModule(models, cfgs, temps, list(chosen.values()), int(cfg["input_size"]),
                            mirrors=[t for _, t in chosen]).eval()
    classes = list(splits.classes)
    t = fit_temperature(np.log(np.clip(avg, 1e-12, None)), labels)
    val_probs = calibrated_probs(np.log(np.clip(avg, 1e-12, None)), t)
    calibration = {"temperature": t, "fitted_on": "val",
                   "rejection": ood.fit_rejection(ood.max_prob_scores(val_probs))}
    info: dict[str, Any] = {
        "format_version": 1,
        "recipe": f"ensemble of {', '.join(f'{member_name(*k)} x{c}' for k, c in chosen.items())}",
        "classes": classes, "num_classes": len(classes), "input_size": int(cfg["input_size"]),
        "load_size": int(cfg["load_size"]), "mean": cfg["mean"], "std": cfg["std"],
        "interpolation": cfg.get("interpolation"), "crop_pct": cfg.get("crop_pct"), "resize": cfg.get("resize", "crop"),
        "data_cfg": cfg, "members": [{"model": n, "tta": t, "run": str(runs[n]), "weight": c / sum(chosen.values()),
                                      "input_size": int(cf["input_size"]), "temperature": tm}
                                     for ((n, t), c), cf, tm in zip(chosen.items(), cfgs, temps)],
        "selection": {"method": "greedy forward selection with replacement on the validation log loss",
                      "rounds": sum(counts), "val_log_loss": nll(avg, labels), "single_val_log_loss": single},
        "input": {"name": "input", "shape": ["batch", 3, int(cfg["input_size"]), int(cfg["input_size"])],
                  "dtype": "float32", "layout": "NCHW, RGB, pixels in [0, 1] (mean 0, std 1)"},
        "output": {"name": "logits", "shape": ["batch", len(classes)], "note": "log of the averaged probabilities"},
        "calibration": calibration, "source_checkpoint": {}, "exports": {}, "num_params": num_params,
    }
    onnx_path = export_dir / runfolder.ONNX_NAME
    t0 = time.perf_counter()
    with torch.inference_mode():
        exporter = export_onnx_graph(module, int(cfg["input_size"]), onnx_path, 18, info)
    pre = Preprocess(cfg)
    batch = np.stack([pre.load(p) for p, _ in val[:16]])
    with torch.inference_mode():
        reference = torch.softmax(module(torch.from_numpy(batch)), 1).numpy()
    session = ort_session(onnx_path)
    info["exports"]["onnx"] = {"file": onnx_path.name, "size_bytes": onnx_path.stat().st_size, "exporter": exporter,
                               "seconds": round(time.perf_counter() - t0, 2),
                               "parity": parity_check(lambda x: ort_probs(session, x), reference, batch,
                                                 f"{len(batch)} validation images", 1e-4)}
    runfolder.write_export_meta(folder, info)
    metrics = evaluate_ensemble(folder, splits, split, classes, info)
    logger.info(f"ensemble of {', '.join(member_name(*k) for k in chosen)}: validation log loss "
                f"{nll(avg, labels):.4f} (best single "
                f"{min(single.values()):.4f}); {split} accuracy {metrics['accuracy']:.4f}, "
                f"{metrics['inference_ms_per_image']:.1f} ms/image")
    return {"status": "ok", "trained": True, "reason": "", "members": {member_name(*k): c for k, c in chosen.items()},
            "chosen_on": "val"}


def evaluate_ensemble(folder: Path, splits, split: str, classes: list[str], info: dict) -> dict:
    """The ensemble's metrics on ``split`` through its ONNX graph (ONNX Runtime, as ``predict`` runs it), written to
    ``folder/eval-<split>/`` like a model's evaluation."""
    onnx_file = runfolder.export_dir(folder) / runfolder.ONNX_NAME
    session, pre = ort_session(onnx_file), Preprocess(info["data_cfg"])
    samples = list(splits.split(split))
    probs, seconds = [], 0.0
    for i in range(0, len(samples), 32):
        batch = np.stack([pre.load(p) for p, _ in samples[i:i + 32]])
        t0 = time.perf_counter()
        probs.append(ort_probs(session, batch))
        seconds += time.perf_counter() - t0
    p = np.concatenate(probs)
    labels = np.array([y for _, y in samples], np.int64)
    metrics = compute_metrics(labels, p, classes)
    metrics.update({"run": str(folder), "recipe": info["recipe"], "split": split, "data": str(splits.root),
                    "checkpoint": None, "inference_ms_per_image": 1000.0 * seconds / max(1, len(samples)),
                    "inference_batch_size": 32, "tta": False, "model_size_mb": onnx_file.stat().st_size / 1e6,
                    "num_params": info["num_params"],
                    "members": info["members"], "notes": [] if split != "val" else [
                        "the members were chosen on this split: its figures are optimistic (compare --split test "
                        "scores the ensemble on images that did not choose it)"], "plots": {}})
    out = runfolder.eval_dir(folder, split)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / runfolder.PREDICTIONS, samples, labels, p, classes)
    atomic_write_text(out / runfolder.METRICS, json.dumps(metrics, indent=2))
    return metrics
