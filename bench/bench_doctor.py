"""The data doctor on real data: speed, planted problems found, the known problems of ../shared/data.

    python bench/bench_doctor.py            # ~15 minutes on 2 cores; writes bench/results/doctor.json
    python bench/bench_doctor.py --quick    # skip the 12,000-image CIFAR-10 speed run

1. Speed: ``diagnose`` on the CIFAR-10 subset (10,000 train + 2,000 test 32 px photos) with an empty
   cache (images/s of the embedding pass, seconds per stage, extrapolated to 10,000 images), then
   again from the feature cache; whether the known cross-split pair test/deer/0052 ~ train/deer/0520
   is found.
2. bf16 vs fp32 embeddings on 600 car photos: images/s and whether the neighbours and the
   near-duplicate pairs stay the same.
3. Planted problems in real photo sets (cars, flowers, a 2,400-image slice of cifar10-subset that
   the built-in sample does not hold, fingers): 3% of the photos moved into a wrong class, 20
   altered copies of train photos put into test (crop + resize + re-encode, shift, colour), 10
   out-of-place images (blank frames, screenshots, unrelated photos); precision and recall of the
   default list of likely label errors (what the doctor flags) and of its rankings at k = the number
   planted (and 1.5x).
   The label rule's table (labels.CONFIDENT_MISTAKES: the share of the probe's disagreements that
   are correctly labelled images below each threshold, per unit of disagreement rate) is refitted
   here as the median over the sets, and the rule is checked leave-one-set-out: the table from the other sets, applied to the
   held-out one.
   The clean built-in sample (2,400 CIFAR-10 photos): the share flagged as label errors and the
   near-duplicate pairs with their similarity.
4. The known problems of ../shared/data: the cars' 76 train/test groups of identical files, the
   flowers' 4 photos filed under both rose/ and tulip/.

The data sets are read from ../shared/data and never modified: a planted set is a folder of
symlinks plus the planted files (``--work``, kept so that a rerun reads the feature cache).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from _common import shared  # noqa: E402 - bench/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "processor": platform.processor(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def _quiet():
    warnings.simplefilter("ignore")


# ---------------------------------------------------------------- 1. speed on CIFAR-10

def speed(data: Path) -> dict:
    from transferlab.doctor import diagnose

    root = data / "cifar10-subset"
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRANSFERLAB_CACHE"] = cache
        try:
            t, c = time.perf_counter(), time.process_time()
            cold = diagnose(root, progress=False)
            cold_s, cold_cpu = time.perf_counter() - t, time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            warm = diagnose(root, progress=False)
            warm_s, warm_cpu = time.perf_counter() - t, time.process_time() - c
        finally:
            del os.environ["TRANSFERLAB_CACHE"]
    n = cold["summary"]["images"]
    member = {f["path"]: d for d in cold["duplicates"] for f in d["files"]}
    a, b = str(root / "test" / "deer" / "0052.jpg"), str(root / "train" / "deer" / "0520.jpg")
    pair = a in member and b in member and member[a]["id"] == member[b]["id"]
    return {
        "images": n, "backbone": cold["settings"]["backbone"], "input_size": cold["settings"]["input_size"],
        "precision": cold["settings"]["precision"],
        "cold": {"seconds": round(cold_s, 1), "cpu_seconds": round(cold_cpu, 1), "stages": cold["timing"],
                 "embedding_images_per_s": cold["timing"]["images_per_s"],
                 "seconds_per_10000_images": round(cold_s * 10_000 / n, 1),
                 # CPU time spread over every core: a lower bound for the wall time on an otherwise idle machine
                 "cpu_seconds_per_10000_images": round(cold_cpu * 10_000 / n, 1),
                 "cpu_seconds_per_10000_images_over_all_cores": round(cold_cpu * 10_000 / n / (os.cpu_count() or 1), 1)},
        "cached": {"seconds": round(warm_s, 1), "cpu_seconds": round(warm_cpu, 1), "stages": warm["timing"]},
        "found": {"duplicate_groups": cold["summary"]["duplicate_groups"], "cross_split": cold["summary"]["cross_split"],
                  "label_issues": cold["summary"]["label_issues"], "outliers": cold["summary"]["outliers"],
                  "test/deer/0052 ~ train/deer/0520": pair},
    }


# ---------------------------------------------------------------- 2. bf16 vs fp32

def precision_check(data: Path) -> dict:
    from transferlab.data import load_data
    from transferlab.doctor import compute_signals, near_duplicate_pairs
    from transferlab.doctor.duplicates import _neighbours, normalize

    splits = load_data(data / "cars", progress=False)
    samples = (splits.train + splits.test)[::4][:600]
    sha = [splits.info[p].sha1 for p, _ in samples]
    out, pairs, nn = {}, {}, {}
    for amp in ("none", "bf16"):
        sig = compute_signals(samples, amp=amp, cache=False, progress=False)
        out[amp] = round(sig["images_per_s"], 1)
        pairs[amp] = {(p["a"], p["b"]) for p in near_duplicate_pairs(sig["features"], phash=sig["phash"],
                                                                      dhash=sig["dhash"], sha1=sha)}
        nn[amp] = _neighbours(normalize(sig["features"]), 5, None)[0]
    return {"images": len(samples), "fp32_images_per_s": out["none"], "bf16_images_per_s": out["bf16"],
            "speedup": round(out["bf16"] / out["none"], 2),
            "nearest_neighbour_agreement": round(float((nn["none"][:, 0] == nn["bf16"][:, 0]).mean()), 3),
            "top5_neighbour_overlap": round(float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(nn["none"], nn["bf16"])])), 3),
            "duplicate_pairs_fp32": len(pairs["none"]), "duplicate_pairs_bf16": len(pairs["bf16"]),
            "duplicate_pairs_in_both": len(pairs["none"] & pairs["bf16"])}


# ---------------------------------------------------------------- 3. planted problems

def _screenshot(i: int) -> Image.Image:
    im = Image.new("RGB", (320, 200), (250, 250, 250))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, 320, 22], fill=(40 + 60 * i, 90, 200))
    for k, y in enumerate(range(32, 190, 14)):
        d.text((8, y), f"Sign in to continue  |  item {k}  |  Settings  Help  {'#' * (k % 5)}", fill=(30, 30, 30))
    return im


def _alter(src: Path, kind: int) -> Image.Image:
    im = Image.open(src).convert("RGB")
    w, h = im.size
    if kind == 0:  # crop + resize
        return im.crop((int(0.07 * w), int(0.05 * h), int(0.95 * w), int(0.96 * h))).resize((int(w * 0.8), int(h * 0.8)))
    if kind == 1:  # shift by 4% with reflected borders
        arr = np.asarray(im)
        dx, dy = max(1, w // 25), max(1, h // 25)
        return Image.fromarray(np.pad(arr, ((dy, 0), (dx, 0), (0, 0)), mode="reflect")[:h, :w])
    arr = np.asarray(im).astype(np.float32)  # brighter, warmer
    return Image.fromarray(np.clip(arr * [1.12, 1.05, 0.95] + 8, 0, 255).astype(np.uint8))


def make_planted(src_root: Path, photos: Path, dst: Path, *, seed: int = 0, mislabel: float = 0.03,
                 copies: int = 20) -> dict:
    """A train/test copy of ``src_root`` (symlinks) with planted problems; returns their paths."""
    from transferlab.data import load_data

    rng = np.random.default_rng(seed)
    splits = load_data(src_root, val_ratio=0.0, progress=False)
    by_sha = defaultdict(list)
    for p, i in splits.info.items():
        by_sha[i.sha1].append(p)
    in_dup = {p for g in by_sha.values() if len(g) > 1 for p in g}
    has_test = bool(splits.test)
    items = []  # (path, class, split)
    for s in ("train", "val", "test"):
        for p, y in splits.split(s):
            cls = splits.classes[y]
            split = s if has_test else ("test" if rng.random() < 0.15 else "train")
            items.append((p, cls, "train" if split == "val" else split))
    clean = [k for k, (p, _, s) in enumerate(items) if p not in in_dup and s == "train"]
    moved = set(rng.choice(clean, size=int(round(mislabel * len(items))), replace=False).tolist())
    truth = {"mislabel": [], "duplicate": [], "outlier": []}
    k_classes = len(splits.classes)
    for k, (p, cls, split) in enumerate(items):
        to = cls
        if k in moved:
            to = splits.classes[(splits.classes.index(cls) + int(rng.integers(1, k_classes))) % k_classes]
        out = dst / split / to / (f"moved_from_{cls}_{Path(p).name}" if k in moved else Path(p).name)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out = out.with_name(f"{out.stem}_{k}{out.suffix}")
        os.symlink(p, out)
        if k in moved:
            truth["mislabel"].append(str(out))
        items[k] = (str(out), to, split)
    train_clean = [k for k in clean if k not in moved]
    for j, k in enumerate(rng.choice(train_clean, size=copies, replace=False).tolist()):
        p, cls, _ = items[k]
        out = dst / "test" / cls / f"altered_copy_{j}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        _alter(Path(os.path.realpath(p)), j % 3).save(out, quality=85)
        truth["duplicate"].append([p, str(out)])
    odd = [Image.new("RGB", (200, 150), (v, v, v)) for v in (0, 128, 255)]
    odd += [_screenshot(i) for i in range(3)]
    odd += [Image.open(photos / n).convert("RGB") for n in ("coffee.png", "china.jpg", "grace_hopper.bmp", "parrot.jpg")]
    for j, im in enumerate(odd):
        cls = splits.classes[j % k_classes]
        out = dst / "train" / cls / f"out_of_place_{j}.png"
        im.save(out)
        truth["outlier"].append(str(out))
    return truth


def _pr(ranked: list[str], truth: list[str], k: int) -> dict:
    hits = len(set(ranked[:k]) & set(truth))
    return {"k": k, "found": hits, "recall": round(hits / len(truth), 3), "precision": round(hits / max(1, min(k, len(ranked))), 3)}


PLANTED = ("cars", "flowers", "cifar10", "fingers")


def cifar_slice(data: Path, work: Path) -> Path:
    """Symlinks to train files 500-699 and test files 100-139 of each cifar10-subset class: the
    built-in sample's kind of photos (it holds the first 200 / 40), none of its files."""
    src = work / "cifar10-src"
    if not src.is_dir():
        tmp = work / "cifar10-src.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for split, lo, hi in (("train", 500, 700), ("test", 100, 140)):
            for c in sorted(os.listdir(data / "cifar10-subset" / split)):
                (tmp / split / c).mkdir(parents=True)
                for f in sorted(os.listdir(data / "cifar10-subset" / split / c))[lo:hi]:
                    os.symlink(data / "cifar10-subset" / split / c / f, tmp / split / c / f)
        tmp.rename(src)
    return src


def _label_figures(report: dict, truth: dict) -> dict:
    """What the rule needs to be refitted: the label quality of every checked image that is not a
    planted error, a planted outlier or a flagged outlier, and the probe's disagreements."""
    skip = set(truth["mislabel"]) | set(truth["outlier"]) | {r["path"] for r in report["outliers"]}
    return {"disagreements": report["label_rule"]["disagreements"], "images": report["label_rule"]["images"],
            "clean_scores": [f[3] for f in report["files"] if f[3] is not None and f[0] not in skip],
            "planted_scores": [f[3] for f in report["files"] if f[3] is not None and f[0] in set(truth["mislabel"])]}


def planted(data: Path, name: str, work: Path, rule_inputs: dict) -> dict:
    from transferlab.doctor import diagnose

    root = work / name
    marker = work / f"{name}.truth.json"
    if marker.is_file() and root.is_dir():  # planted before: the same files, so the feature cache hits
        truth = json.loads(marker.read_text())
    else:
        shutil.rmtree(root, ignore_errors=True)
        src = cifar_slice(data, work) if name == "cifar10" else data / name
        truth = make_planted(src, data / "photos", root)
        marker.write_text(json.dumps(truth))
    t = time.perf_counter()
    report = diagnose(root, progress=False)
    seconds = time.perf_counter() - t
    flagged = [r["path"] for r in report["label_issues"]]
    issues = flagged + [r["path"] for r in report["label_review"]]
    rule_inputs[name] = _label_figures(report, truth)
    ranking = [f[0] for f in sorted(report["files"], key=lambda f: (f[3] is None, f[3] or 0.0))]
    outliers = [r["path"] for r in report["outliers"]]
    n_lab, n_out = len(truth["mislabel"]), len(truth["outlier"])
    member = {f["path"]: d for d in report["duplicates"] for f in d["files"]}
    dup_found = sum(1 for a, b in truth["duplicate"] if a in member and b in member and member[a]["id"] == member[b]["id"]
                    and "cross-split" in member[a]["kinds"])
    found_all = len(set(issues) & set(truth["mislabel"]))
    found_flagged = len(set(flagged) & set(truth["mislabel"]))
    return {
        "images": report["summary"]["images"], "seconds": round(seconds, 1),
        "label_errors": {"planted": n_lab,
                         "flagged": {"count": len(flagged), "found": found_flagged,
                                     "precision": round(found_flagged / max(1, len(flagged)), 3),
                                     "recall": round(found_flagged / n_lab, 3),
                                     "estimated_precision": report["label_rule"]["estimated_precision"],
                                     "threshold": report["label_rule"]["threshold"],
                                     "disagreements": report["label_rule"]["disagreements"],
                                     "meets_target": found_flagged / n_lab >= 0.75
                                     and found_flagged / max(1, len(flagged)) >= 0.5},
                         "to_review": len(issues) - len(flagged),
                         "reported": len(issues),
                         "recall_all_reported": round(found_all / n_lab, 3),
                         "precision_all_reported": round(found_all / max(1, len(issues)), 3),
                         "at_k": _pr(issues, truth["mislabel"], n_lab),
                         "at_1.5k": _pr(issues, truth["mislabel"], int(1.5 * n_lab)),
                         "all_images_ranked_at_k": _pr(ranking, truth["mislabel"], n_lab),
                         "all_images_ranked_at_1.5k": _pr(ranking, truth["mislabel"], int(1.5 * n_lab))},
        "near_duplicates": {"planted": len(truth["duplicate"]), "found_cross_split": dup_found},
        "outliers": {"planted": n_out, "flagged": len(outliers), "at_k": _pr(outliers, truth["outlier"], n_out),
                     "recall_all_flagged": round(len(set(outliers) & set(truth["outlier"])) / n_out, 3)},
        "summary": report["summary"],
    }


def _table(inputs: dict, names) -> list[float]:
    """labels.CONFIDENT_MISTAKES refitted on ``names``: per threshold, the median over the sets of
    (correctly labelled images below it) / (the probe's disagreements) / (its disagreement rate)."""
    from transferlab.doctor.labels import FLAG_GRID

    def per_set(d: dict) -> list[float]:
        m = max(1, d["disagreements"])
        rate = m / max(1, d["images"])
        return [float(np.sum(np.asarray(d["clean_scores"]) < t)) / m / rate for t in FLAG_GRID]

    per = [per_set(inputs[n]) for n in names]
    return [round(float(v), 4) for v in np.median(np.asarray(per), axis=0)]


def rule_check(inputs: dict) -> dict:
    """The refitted table (all sets) beside the shipped one, and leave-one-set-out: the rule with the
    table of the other sets, on the held-out set's scores (precision and recall of what it flags)."""
    from transferlab.doctor.labels import CONFIDENT_MISTAKES, FLAG_PRECISION, flag_rule

    names = [n for n in PLANTED if n in inputs]
    out = {"target_precision": FLAG_PRECISION, "table_all_sets": _table(inputs, names),
           "table_shipped": list(CONFIDENT_MISTAKES), "leave_one_out": {}}
    for held in names:
        table = _table(inputs, [n for n in names if n != held])
        clean = np.asarray(inputs[held]["clean_scores"])
        bad = np.asarray(inputs[held]["planted_scores"])
        rule = flag_rule(np.concatenate([clean, bad]), inputs[held]["disagreements"], images=inputs[held]["images"],
                         mistakes=tuple(table))
        t = rule["threshold"]
        found = int(np.sum(bad < t)) if t is not None else 0
        # the best any threshold on this ranking could do, chosen with hindsight
        order = np.sort(np.concatenate([clean, bad]))
        need = int(np.ceil(0.75 * len(bad)))
        cut = np.sort(bad)[need - 1] if len(bad) else 0.0
        out.setdefault("best_precision_at_recall_0.75", {})[held] = (
            round(need / max(1, int(np.sum(order <= cut))), 3) if len(bad) else None)
        out["leave_one_out"][held] = {"threshold": t, "flagged": rule["flagged"], "found": found,
                                      "precision": round(found / max(1, rule["flagged"]), 3),
                                      "recall": round(found / max(1, len(bad)), 3),
                                      "estimated_precision": rule["estimated_precision"]}
    return out


def clean_sample() -> dict:
    """The built-in CIFAR-10 sample (a curated benchmark: next to no wrong labels): the share of
    images flagged as label errors, how many are to review, the near-duplicate pairs."""
    from transferlab.data.sample import sample_dir
    from transferlab.doctor import diagnose, summary

    r = diagnose(sample_dir(), progress=False)
    n = r["summary"]["images"]
    pairs = [{"a": p["a"], "b": p["b"], "signals": p["signals"], "similarity": p["similarity"],
              "hash_distance": p["hash_distance"]} for d in r["duplicates"] for p in d["pairs"]]
    return {"images": n, "flagged": r["summary"]["label_issues"],
            "flagged_share": round(r["summary"]["label_issues"] / n, 4), "to_review": r["summary"]["label_review"],
            "estimated_precision": r["label_rule"]["estimated_precision"],
            "disagreements": r["label_rule"]["disagreements"],
            "target_met": r["summary"]["label_issues"] / n <= 0.03,
            "headline": summary(r)[0], "duplicate_pairs": pairs}


# ---------------------------------------------------------------- 4. the known problems of ../shared/data

def known(data: Path) -> dict:
    from transferlab.data import load_data
    from transferlab.doctor import diagnose

    out = {}
    cars = load_data(data / "cars", progress=False)
    r = diagnose(cars, progress=False)
    member = {f["path"]: d for d in r["duplicates"] for f in d["files"]}
    by = defaultdict(list)
    for p, i in cars.info.items():
        by[i.sha1].append(p)
    leaks = [g for g in by.values() if any("/train/" in p for p in g) and any("/test/" in p for p in g)]
    found = sum(1 for g in leaks if all(p in member for p in g) and len({member[p]["id"] for p in g}) == 1
                and "cross-split" in member[g[0]]["kinds"])
    out["cars"] = {"train_test_identical_groups": len(leaks), "found": found, "summary": r["summary"]}
    r = diagnose(data / "flowers", progress=False)
    conflicts = [d for d in r["duplicates"] if "conflicting-labels" in d["kinds"]]
    names = {(f["label"], Path(f["path"]).name) for d in conflicts for f in d["files"]}
    both = sorted({n for _, n in names if ("rose", n) in names and ("tulip", n) in names})
    out["flowers"] = {"rose_and_tulip_files_found": len(both), "files": both, "summary": r["summary"]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 12,000-image CIFAR-10 speed run")
    parser.add_argument("--labels-only", action="store_true",
                        help="only the planted sets, the label rule and the clean sample (keep the other sections)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "transferlab-bench-doctor"),
                        help="folder for the planted data sets, kept so that reruns hit the feature cache "
                             "(default: TMPDIR/transferlab-bench-doctor)")
    args = parser.parse_args()
    _quiet()
    data = shared() / "data"
    result = {"date": date.today().isoformat(), "machine": machine()}
    t0 = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    inputs: dict = {}
    for name in PLANTED:
        print(f"planted problems in {name} ...", flush=True)
        result.setdefault("planted", {})[name] = planted(data, name, work, inputs)
        print(json.dumps(result["planted"][name], indent=1), flush=True)
    (work / "label_inputs.json").write_text(json.dumps(inputs))  # to refit the rule without rerunning
    result["label_rule"] = rule_check(inputs)
    print(json.dumps(result["label_rule"]["leave_one_out"], indent=1), flush=True)
    print("the clean built-in sample ...", flush=True)
    result["clean_sample"] = clean_sample()
    print(json.dumps(result["clean_sample"], indent=1), flush=True)
    if args.labels_only:
        out = HERE / "results" / "doctor.json"
        old = json.loads(out.read_text()) if out.exists() else {}
        for key in ("known", "bf16_vs_fp32", "speed"):
            if key in old:
                result[key] = old[key]
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out.relative_to(REPO)} (labels only: the other sections kept from {old.get('date')})")
        return 0
    print("known problems of ../shared/data ...", flush=True)
    result["known"] = known(data)
    print(json.dumps(result["known"], indent=1), flush=True)
    print("bf16 vs fp32 ...", flush=True)
    result["bf16_vs_fp32"] = precision_check(data)
    print(json.dumps(result["bf16_vs_fp32"], indent=1), flush=True)
    if not args.quick:
        print("speed on the CIFAR-10 subset (12,000 images, empty cache, then cached) ...", flush=True)
        result["speed"] = speed(data)
        print(json.dumps(result["speed"], indent=1), flush=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = HERE / "results" / "doctor.json"
    if args.quick and out.exists():  # keep the last full speed figures
        old = json.loads(out.read_text())
        if "speed" in old:
            result["speed"] = old["speed"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
