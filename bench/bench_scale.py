"""How the CLI scales with the number of photos: time, images/s, peak RSS and cache on disk per command.

    python bench/bench_scale.py                              # sizes 5,000 20,000 60,000 240,000 (many hours on 2 cores)
    python bench/bench_scale.py --sizes 5000 20000 --commands inspect doctor
    python bench/bench_scale.py --only-build                 # build the folders, measure nothing
    python bench/bench_scale.py --quick --out /tmp/scale-quick.json   # sizes 300 600: tests the script

**The photos are composed, not new.** The large labelled folders are made from the 12,000 real
32x32 photos of ../shared/data/cifar10-subset (train + test, 10 classes): each file is a deterministic
variant of one source photo (a random crop of 80-100% of the side resized back to 32x32 with PIL, a
horizontal flip on odd variants, JPEG re-encoding at quality 70-95; seeded by (source index, variant);
every file has a distinct SHA-1). 240,000 files are 20 variants of each photo: they cost what real
32 px photos cost to read, decode and train on, but they are not 240,000 independent photos (near-
duplicates abound: the doctor's findings and any accuracy on them mean nothing here).

Layout: ROOT/master/CLASS/*.jpg holds max(--sizes) files; each size N is ROOT/N/CLASS/*.jpg, hard links
(``os.link``) to the first N master files taken class-balanced (so the sizes are nested). Built once
and reused when the counts match (ROOT/markers/*.json).

For each size, each command runs as a user runs it (``python -m transferlab ...`` in a subprocess
under ``/usr/bin/time -v``: wall time and "Maximum resident set size", the largest single process of
the tree, loader workers are separate processes), with ``TRANSFERLAB_CACHE`` set to a fresh per-size
folder, so that the caches are built cold inside the measured commands, in the order inspect, doctor,
scratch, frozen, finetune (frozen builds the image cache finetune then reads). The cache's disk use is
recorded after each command; the per-size cache is deleted at the end of the size.

  inspect   transferlab inspect DIR --json OUT/inspect.json --no-progress
  doctor    transferlab doctor DIR --out OUT/doctor --no-html --no-progress
  scratch   transferlab train DIR --model cnn_bn --epochs 1 ...
  frozen    transferlab train DIR --model mobilenet_v2 --freeze frozen --epochs 1 --fine-tune 0 ...
            (head only, on cached features of the frozen backbone; no fine-tune phase)
  finetune  transferlab train DIR --model mobilenet_v2 --epochs 1 --fine-tune 1 --unfreeze-last 11 ...
            (--epochs 0 is refused, so this is the recipe's plan cut to one head epoch on cached
            features, then one epoch of the fine-tuning phase with the recipe's upper 11 blocks
            unfrozen; the run's history gives the fine-tune epoch's own seconds)

images/s = the photos in the folder / the command's whole wall time (process start to exit; training
trains on the 80% not held out for validation and evaluates the rest).

At the end: least-squares fits time ~ a + b*N and log-log slopes of time and RSS vs N per command, a
table, and an **estimate** (an extrapolation, not a measurement) for 1,000,000 photos at 224 px.
Results: bench/results/scale.json (written after every command; rows of other sizes already in the
file are kept, each with its date).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from importlib import metadata
from pathlib import Path

import numpy as np
from _common import shared  # noqa: E402 - bench/ is on sys.path when run as a script

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "scale.json"

SIZES = (5000, 20000, 60000, 240000)
QUICK_SIZES = (300, 600)
COMMANDS = ("inspect", "doctor", "scratch", "frozen", "finetune")
SIDE = 32                      # the source photos' side (CIFAR-10)
TARGET_N, TARGET_SIDE = 1_000_000, 224
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
COMPOSED_NOTE = ("the files are composed from the 12,000 real CIFAR-10 subset photos (random crops of 80-100% "
                 "of the side resized to 32x32, flips, JPEG re-encoding at quality 70-95), not new photos")


def machine() -> dict:
    ram = None
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        ram = round(kb / 1024 ** 2, 1)
    except (OSError, StopIteration, ValueError):
        pass
    versions = {}
    for pkg in ("torch", "timm", "pillow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu_count": os.cpu_count(), "ram_gb": ram, "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), **versions,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


# ---------------------------------------------------------------- the folders

def source_photos(src: Path) -> dict[str, list[tuple[str, Path]]]:
    """``{class: [(tag, path), ...]}`` of ``src/{train,test,...}/CLASS/*`` or ``src/CLASS/*``, sorted by tag."""
    src = Path(src)
    subdirs = sorted(d for d in src.iterdir() if d.is_dir())
    split_layout = subdirs and {d.name for d in subdirs} <= {"train", "test", "val", "valid", "validation"}
    roots = [(d.name + "-", d) for d in subdirs] if split_layout else [("", src)]
    out: dict[str, list[tuple[str, Path]]] = {}
    for prefix, root in roots:
        for cdir in sorted(d for d in root.iterdir() if d.is_dir()):
            for f in sorted(cdir.iterdir()):
                if f.suffix.lower() in IMAGE_EXT and f.is_file():
                    out.setdefault(cdir.name, []).append((prefix + f.stem, f))
    if not out:
        raise SystemExit(f"no photos under {src}")
    return {c: sorted(v) for c, v in sorted(out.items())}


def variant(path: Path, index: int, v: int, attempt: int = 0) -> bytes:
    """JPEG bytes of variant ``v`` of the photo: a crop of 80-100% of the side at a random place,
    resized back to the photo's size, flipped when ``v`` is odd, re-encoded at quality 70-95."""
    from PIL import Image

    rng = np.random.default_rng([index, v, attempt])
    im = Image.open(path).convert("RGB")
    w, h = im.size
    frac = rng.uniform(0.8, 1.0)
    cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = im.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BICUBIC)
    if v % 2:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=int(rng.integers(70, 96)))
    return buf.getvalue()


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _count(folder: Path) -> dict[str, int]:
    if not folder.is_dir():
        return {}
    return {d.name: sum(1 for f in d.iterdir() if f.suffix == ".jpg") for d in sorted(folder.iterdir()) if d.is_dir()}


def per_class(n: int, classes: list[str]) -> dict[str, int]:
    """``n`` split over the classes: n // C each, one more for the first n % C."""
    base, extra = divmod(n, len(classes))
    return {c: base + (i < extra) for i, c in enumerate(classes)}


def build_master(source: Path, root: Path, count: int, log=print) -> dict:
    """ROOT/master/CLASS/*.jpg: at least ``count`` distinct files (ceil(count / C) per class), made
    from the photos under ``source``; kept when its marker and file counts say it is complete."""
    root = Path(root)
    photos = source_photos(source)
    classes = list(photos)
    need = math.ceil(count / len(classes))
    marker_path = root / "markers" / "master.json"
    marker = _read_marker(marker_path)
    master = root / "master"
    if (marker and marker.get("source") == str(Path(source).resolve()) and marker.get("per_class", 0) >= need
            and _count(master) == {c: marker["per_class"] for c in classes}):
        log(f"master set: {marker['files']:,} files in {master} (built before in {marker['seconds']} s; reused)")
        return marker
    t0 = time.perf_counter()
    shutil.rmtree(master, ignore_errors=True)
    tmp = root / "master.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    index = {p: i for i, p in enumerate(p for c in classes for _, p in photos[c])}  # global source index
    seen: set[bytes] = set()
    redraws = 0
    for c in classes:
        (tmp / c).mkdir(parents=True)
        srcs, made = photos[c], 0
        v = 0
        while made < need:
            for tag, p in srcs:
                if made >= need:
                    break
                attempt = 0
                data = variant(p, index[p], v, attempt)
                while hashlib.sha1(data).digest() in seen:  # identical to a file made before: draw again
                    attempt += 1
                    redraws += 1
                    data = variant(p, index[p], v, attempt)
                seen.add(hashlib.sha1(data).digest())
                (tmp / c / f"{v:04d}-{tag}.jpg").write_bytes(data)
                made += 1
            v += 1
    tmp.rename(master)
    seconds = round(time.perf_counter() - t0, 1)
    marker = {"source": str(Path(source).resolve()), "sources": sum(len(v) for v in photos.values()),
              "classes": classes, "per_class": need, "files": need * len(classes),
              "variants_per_photo": math.ceil(need / min(len(v) for v in photos.values())), "redraws": redraws,
              "seconds": seconds, "build_id": uuid.uuid4().hex, "date": date.today().isoformat(), "note": COMPOSED_NOTE}
    marker_path.parent.mkdir(parents=True, exist_ok=True)
    marker_path.write_text(json.dumps(marker, indent=1))
    log(f"master set: {marker['files']:,} files built in {seconds} s ({redraws} redraws of identical files); "
        f"{COMPOSED_NOTE}")
    return marker


def build_size(root: Path, n: int, log=print) -> Path:
    """ROOT/N/CLASS/*.jpg: hard links to the first files of each class of the master set, class-balanced."""
    root = Path(root)
    master_marker = _read_marker(root / "markers" / "master.json")
    if not master_marker:
        raise RuntimeError(f"no master set under {root}: build_master first")
    classes = master_marker["classes"]
    want = per_class(n, classes)
    folder = root / str(n)
    marker_path = root / "markers" / f"{n}.json"
    marker = _read_marker(marker_path)
    if marker and marker.get("build_id") == master_marker["build_id"] and _count(folder) == want:
        return folder
    t0 = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    for c in classes:
        files = sorted(f for f in (root / "master" / c).iterdir() if f.suffix == ".jpg")
        if len(files) < want[c]:
            raise RuntimeError(f"master set has {len(files)} files of {c}, {want[c]} needed for {n}")
        (folder / c).mkdir(parents=True)
        for f in files[:want[c]]:
            os.link(f, folder / c / f.name)
    marker_path.write_text(json.dumps({"n": n, "per_class": want, "build_id": master_marker["build_id"]}))
    log(f"size {n:,}: {folder} (hard links, {time.perf_counter() - t0:.1f} s)")
    return folder


# ---------------------------------------------------------------- running a command

def argv_for(command: str, data: Path, out: Path, weights: Path) -> list[str]:
    run = ["--run-dir", str(out / "runs"), "--name", command, "--overwrite", "--no-progress"]
    return {
        "inspect": ["inspect", str(data), "--json", str(out / "inspect.json"), "--no-progress"],
        "doctor": ["doctor", str(data), "--out", str(out / "doctor"), "--no-html", "--no-progress"],
        "scratch": ["train", str(data), "--model", "cnn_bn", "--epochs", "1", *run],
        "frozen": ["train", str(data), "--model", "mobilenet_v2", "--freeze", "frozen", "--epochs", "1",
                   "--fine-tune", "0", "--weights", str(weights), *run],
        "finetune": ["train", str(data), "--model", "mobilenet_v2", "--epochs", "1", "--fine-tune", "1",
                     "--unfreeze-last", "11", "--weights", str(weights), *run],
    }[command]


def disk_mb(folder: Path) -> float:
    """Disk use of ``folder`` (what ``du`` counts: allocated blocks, hard links once)."""
    total, seen = 0, set()
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return round(total / 1e6, 2)


def parse_time_v(text: str) -> dict:
    """Wall seconds, peak RSS (MB), user and system seconds from ``/usr/bin/time -v``'s report."""
    out = {}
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\):\s*(\S+)", text)
    if m:
        secs = 0.0
        for part in m.group(1).split(":"):
            secs = secs * 60 + float(part)
        out["seconds"] = secs
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
    if m:
        out["peak_rss_mb"] = round(int(m.group(1)) / 1024, 1)
    for key, name in (("user_s", "User time"), ("system_s", "System time")):
        m = re.search(rf"{name} \(seconds\):\s*([\d.]+)", text)
        if m:
            out[key] = float(m.group(1))
    return out


def _tail(*paths: Path, chars: int = 2000) -> str:
    text = ""
    for p in paths:
        try:
            text += p.read_text(errors="replace")
        except OSError:
            pass
    return text[-chars:]


def run_command(argv: list[str], env: dict, log_dir: Path, name: str, timeout: float) -> dict:
    """``python -m transferlab ARGV`` under ``/usr/bin/time -v``; never raises for a failure or a timeout."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_f, err_f, time_f = log_dir / f"{name}.out", log_dir / f"{name}.err", log_dir / f"{name}.time"
    time_f.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "transferlab", *argv]
    timer = shutil.which("time") if not Path("/usr/bin/time").exists() else "/usr/bin/time"
    if timer:
        cmd = [timer, "-v", "-o", str(time_f), *cmd]
    t0 = time.perf_counter()
    timed_out = False
    with open(out_f, "w") as so, open(err_f, "w") as se:
        try:
            proc = subprocess.Popen(cmd, stdout=so, stderr=se, env=env, cwd=log_dir, start_new_session=True)
        except OSError as exc:
            return {"status": "failed", "rc": None, "tail": str(exc)}
        status, usage = None, None
        while True:  # wait4 polled: the exit status, this child tree's rusage, and a timeout
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = st, ru
                break
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                    try:
                        os.killpg(proc.pid, sig)
                    except ProcessLookupError:
                        break
                    end = time.perf_counter() + grace
                    while time.perf_counter() < end:
                        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
                        if pid:
                            status, usage = st, ru
                            break
                        time.sleep(0.2)
                    if status is not None:
                        break
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else -9
    wall = time.perf_counter() - t0
    rc = proc.returncode
    row = {"rc": rc, "seconds": round(wall, 2)}
    measured = parse_time_v(time_f.read_text()) if time_f.is_file() else {}
    if "seconds" in measured and not timed_out:
        row["seconds"] = round(measured["seconds"], 2)
    if "peak_rss_mb" in measured:
        row["peak_rss_mb"] = measured["peak_rss_mb"]
    elif usage is not None:
        row["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    if "user_s" in measured:
        row["cpu_s"] = round(measured["user_s"] + measured.get("system_s", 0.0), 1)
    elif usage is not None:
        row["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    if timed_out:
        row.update(status="timeout", timeout_s=timeout, tail=_tail(err_f))
    elif rc != 0:
        row.update(status="failed", tail=_tail(err_f) or _tail(out_f))
    else:
        row["status"] = "ok"
    return row


def run_details(command: str, out: Path) -> dict:
    """What the command's own output says: the input size it chose and the epochs' seconds."""
    d: dict = {}
    try:
        if command == "doctor":
            settings = json.loads((out / "doctor" / "doctor.json").read_text()).get("settings", {})
            d["input_size"] = settings.get("input_size")
        elif command in ("scratch", "frozen", "finetune"):
            run = out / "runs" / command
            cfg = json.loads((run / "config.json").read_text())
            d["input_size"] = cfg.get("input_size") or (cfg.get("data_cfg") or {}).get("input_size")
            import csv

            with open(run / "history.csv") as f:
                d["epoch_seconds"] = [round(float(r["seconds"]), 2) for r in csv.DictReader(f) if r.get("seconds")]
            # training's feature caches live on disk only while their phase runs (gone when du looks)
            caches = [{"shape": [int(x) for x in shape.replace(" ", "").split(",") if x],
                       "mb": round(float(size.replace(",", "")) * {"KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}[unit] / 1e6, 1)}
                      for shape, size, unit in re.findall(r"cached frozen-backbone features: .*?\(([\d, ]+)\) each, "
                                                          r"([\d,.]+) (KiB|MiB|GiB) on disk", (out / f"{command}.out").read_text())]
            if caches:
                d["train_feature_caches"] = caches
        elif command == "inspect":
            d["input_size"] = SIDE
    except (OSError, ValueError, KeyError):
        pass
    return {k: v for k, v in d.items() if v is not None}


# ---------------------------------------------------------------- fits, table, estimate

def fits(runs: dict) -> dict:
    out = {}
    for c in COMMANDS:
        pts = sorted((int(n), r[c]) for n, r in runs.items() if (r.get(c) or {}).get("status") == "ok")
        if len({n for n, _ in pts}) < 2:
            continue
        n = np.array([p[0] for p in pts], float)
        t = np.array([p[1]["seconds"] for p in pts], float)
        rss = np.array([p[1].get("peak_rss_mb", np.nan) for p in pts], float)
        b, a = np.polyfit(n, t, 1)
        f = {"points": len(pts), "a_s": round(float(a), 2), "b_s_per_image": float(f"{b:.4g}"),
             "time_loglog_slope": round(float(np.polyfit(np.log(n), np.log(t), 1)[0]), 3)}
        if np.all(np.isfinite(rss)):
            rb, ra = np.polyfit(n, rss, 1)
            f.update(rss_a_mb=round(float(ra), 1), rss_b_mb_per_image=float(f"{rb:.4g}"),
                     rss_loglog_slope=round(float(np.polyfit(np.log(n), np.log(rss), 1)[0]), 3))
        out[c] = f
    return out


def _target_input(command: str) -> int:
    """The input size the command would use for 224 px photos (the recipes' own rule)."""
    recipe = {"doctor": "efficientnet_lite0", "scratch": "cnn_bn", "frozen": "mobilenet_v2",
              "finetune": "mobilenet_v2"}.get(command)
    if recipe is None:
        return TARGET_SIDE
    try:
        from transferlab.models.registry import get_recipe

        return int(get_recipe(recipe).input_for(TARGET_SIDE)[0])
    except Exception:  # noqa: BLE001 - an estimate; fall back to the rule as documented
        return 128 if command == "scratch" else TARGET_SIDE


def _load_size_224() -> int:
    try:
        from transferlab.models.registry import get_recipe

        recipe = get_recipe("mobilenet_v2")
        return int(recipe.data_cfg(*recipe.input_for(TARGET_SIDE))["load_size"])
    except Exception:  # noqa: BLE001
        return round(TARGET_SIDE / 0.875)


def estimate(runs: dict, fit: dict) -> dict:
    """1,000,000 photos at 224 px from the fits: an extrapolation, with its reasoning."""
    est: dict = {"what": f"an estimate for {TARGET_N:,} photos of {TARGET_SIDE}x{TARGET_SIDE} px, extrapolated "
                         f"from {SIDE} px composed photos; not a measurement", "commands": {}, "reasoning": []}
    why = est["reasoning"]
    why.append(f"time: the fit t = a + b*N (a: start-up, model loading; b: seconds per photo) taken to N = "
               f"{TARGET_N:,}, its per-photo part scaled by the pixel ratio of the size the work runs at: "
               f"(target input / measured input)^2 (decoding grows with the source pixels, (224/32)^2 = "
               f"{(TARGET_SIDE / SIDE) ** 2:.0f}; the network's compute with its input size). The (224/32)^2 "
               f"figure for every per-photo part is given too, as an upper bound.")
    why.append("where the log-log slope of time is above 1.1 the command grows faster than N here and the linear "
               "figure understates it; a power-law figure t(N_max) * (1e6/N_max)^slope * ratio is given beside it.")
    why.append("RSS: flat (|log-log slope| < 0.15) -> the largest measured value, plus what larger inputs add to "
               "the model's activations (not estimated); else the linear RSS fit to 1e6: what grows with N is "
               "per-file bookkeeping (paths, sizes, hashes, labels), which does not depend on the pixels, so it is "
               "not scaled. inspect's time is scaled by the pixel ratio as an upper bound: it reads every file "
               "(a 224 px JPEG is about 10x the bytes of a 32 px one) but decodes only headers.")
    load = _load_size_224()
    cache_gb = 3 * load * load * TARGET_N / 1e9
    why.append(f"disk: the image cache keeps 3*L*L bytes per photo at the load size L (mobilenet_v2 at 224 px: "
               f"L = {load}): {3 * load * load:,} bytes x {TARGET_N:,} = {cache_gb:,.0f} GB per image-cache "
               f"array; each distinct load size (doctor's, the scratch net's) is another array. Over the cache limit "
               f"(--cache-max-gb / TRANSFERLAB_CACHE_MAX_GB, default 20 GB) such an array is not built and every "
               f"epoch decodes per photo instead: then the decode part of the time is paid each epoch, not once.")
    why.append("disk while training: each phase writes its cached features under TRANSFERLAB_CACHE/train-features "
               "and removes them after the phase (so the du after the command misses them); taken from the run's "
               "own log, per photo, to 1e6, spatial feature maps (the fine-tune phase's lower-block output) scaled "
               "by the pixel ratio; with the recipe's 4 augmented views (6 fine-tune epochs) it is 4x that.")
    if max((int(n) for n in runs), default=0) < 5000:
        why.insert(0, "the largest size measured is below 5,000 photos: start-up dominates every time here, so "
                      "these figures test the script and mean nothing for 1,000,000 photos.")
    est["image_cache_gb_per_array"] = round(cache_gb, 1)
    est["load_size"] = load
    for c, f in fit.items():
        rows = [(int(n), r[c]) for n, r in runs.items() if (r.get(c) or {}).get("status") == "ok"]
        n_max, r_max = max(rows, key=lambda x: x[0])
        measured_in = r_max.get("input_size") or SIDE
        target_in = TARGET_SIDE if c == "inspect" else _target_input(c)
        ratio = (target_in / measured_in) ** 2
        upper = (TARGET_SIDE / SIDE) ** 2
        e = {"measured_input": measured_in, "target_input": target_in, "pixel_ratio": round(ratio, 2)}
        if f["b_s_per_image"] <= 0:  # time did not grow with N here: start-up dominated, nothing to extrapolate
            e.update(hours=None, hours_upper_224_over_32_squared=None,
                     note="no per-photo cost measurable at these sizes (b <= 0): no estimate")
            est["commands"][c] = e
            continue
        e["hours"] = round((f["a_s"] + f["b_s_per_image"] * TARGET_N * ratio) / 3600, 1)
        e["hours_upper_224_over_32_squared"] = round((f["a_s"] + f["b_s_per_image"] * TARGET_N * upper) / 3600, 1)
        if f["time_loglog_slope"] > 1.1:
            e["hours_power_law"] = round(r_max["seconds"] * (TARGET_N / n_max) ** f["time_loglog_slope"] * ratio / 3600, 1)
        feats = r_max.get("train_feature_caches") or []
        if feats:  # the largest phase's feature cache, per photo, taken to 1e6 (spatial maps grow with pixels)
            e["train_feature_cache_gb"] = round(max(
                fc["mb"] / n_max * TARGET_N * (ratio if len(fc["shape"]) == 3 else 1.0) for fc in feats) / 1e3, 1)
        slope = f.get("rss_loglog_slope")
        if slope is not None:
            if abs(slope) < 0.15:
                e["rss_gb"] = round(max(r.get("peak_rss_mb", 0) for _, r in rows) / 1024, 2)
                e["rss_basis"] = "flat"
            else:
                e["rss_gb"] = round((f["rss_a_mb"] + f["rss_b_mb_per_image"] * TARGET_N) / 1024, 1)
                e["rss_basis"] = f"grows with N (slope {slope}): extrapolated"
        est["commands"][c] = e
    return est


def table(results: dict) -> str:
    runs = results.get("runs", {})
    cmds = [c for c in COMMANDS if any(c in r for r in runs.values())]
    lines = ["| photos | " + " | ".join(f"{c}: time, img/s, peak RSS" for c in cmds) + " |",
             "|---|" + "---|" * len(cmds)]
    for n in sorted(runs, key=int):
        cells = []
        for c in cmds:
            r = runs[n].get(c)
            if not r:
                cells.append("-")
            elif r.get("status") != "ok":
                cells.append(f"{r.get('status')} (rc {r.get('rc')})")
            else:
                cells.append(f"{r['seconds']:,.1f} s, {r['images_per_s']:,.0f}, {r.get('peak_rss_mb', 0):,.0f} MB")
        lines.append(f"| {int(n):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: dict) -> None:
    print(table(results))
    fit = results.get("fits") or {}
    if fit:
        print("\nfits (time ~ a + b*N; log-log slopes of time and peak RSS vs N):")
        for c, f in fit.items():
            print(f"  {c:9s} a = {f['a_s']:8.1f} s, b = {f['b_s_per_image'] * 1000:8.3f} ms/photo, "
                  f"slope time {f['time_loglog_slope']:.2f}, RSS {f.get('rss_loglog_slope', float('nan')):.2f} "
                  f"({f['points']} sizes)")
    est = results.get("estimate_1m_224")
    if est and est.get("commands"):
        print(f"\nESTIMATE: {est['what']}.")
        for line in est["reasoning"]:
            print(f"  - {line}")
        for c, e in est["commands"].items():
            if e.get("hours") is None:
                print(f"  {c:9s} {e.get('note')}")
                continue
            extra = f", power law {e['hours_power_law']} h" if "hours_power_law" in e else ""
            rss = f", RSS ~{e['rss_gb']} GB ({e['rss_basis']})" if "rss_gb" in e else ""
            if "train_feature_cache_gb" in e:
                rss += f", feature cache ~{e['train_feature_cache_gb']:,} GB on disk during a phase"
            print(f"  {c:9s} ~{e['hours']:,} h (input {e['measured_input']} -> {e['target_input']} px, x{e['pixel_ratio']}; "
                  f"upper bound x{(TARGET_SIDE / SIDE) ** 2:.0f}: {e['hours_upper_224_over_32_squared']:,} h{extra}){rss}")
        print(f"  image cache on disk: ~{est['image_cache_gb_per_array']:,} GB per array at L = {est['load_size']}")
    print(f"\nnote: {COMPOSED_NOTE}.")


def save(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=None, help=f"photos per folder (default {' '.join(map(str, SIZES))})")
    p.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS,
                   help="commands to measure (always run in the order inspect doctor scratch frozen finetune)")
    p.add_argument("--root", default=None, help="where the folders, caches and outputs go (default /tmp/transferlab-scale; "
                                                "--quick: /tmp/transferlab-scale-quick)")
    p.add_argument("--source", default=None, help="photos to compose from (default ../shared/data/cifar10-subset)")
    p.add_argument("--timeout", type=float, default=5400, help="seconds per command (default 5400)")
    p.add_argument("--out", default=None, help="results file (default bench/results/scale.json; --quick: "
                                                "/tmp/scale-quick.json, so test figures stay out of the results)")
    p.add_argument("--only-build", action="store_true", help="build the folders and stop")
    p.add_argument("--quick", action="store_true", help=f"sizes {' '.join(map(str, QUICK_SIZES))}: tests the script")
    p.add_argument("--table", action="store_true",
                   help="refit and re-estimate from the runs in --out (saved back), print the table; measure nothing")
    args = p.parse_args(argv)
    out = Path(args.out or ("/tmp/scale-quick.json" if args.quick else RESULTS))
    results = json.loads(out.read_text()) if out.is_file() else {}
    if args.table:
        if results.get("runs"):
            results["fits"] = fits(results["runs"])
            results["estimate_1m_224"] = estimate(results["runs"], results["fits"])
            save(results, out)
        report(results)
        return 0
    sizes = sorted(set(args.sizes or (QUICK_SIZES if args.quick else SIZES)))
    root = Path(args.root or ("/tmp/transferlab-scale-quick" if args.quick else "/tmp/transferlab-scale"))
    source = Path(args.source) if args.source else shared() / "data" / "cifar10-subset"
    root.mkdir(parents=True, exist_ok=True)
    print(f"data: {COMPOSED_NOTE}", flush=True)
    t0 = time.perf_counter()
    master = build_master(source, root, max(sizes))
    folders = {n: build_size(root, n) for n in sizes}
    build_s = round(time.perf_counter() - t0, 1)
    print(f"build time: {build_s} s (master set {master['seconds']} s when built)", flush=True)
    if args.only_build:
        return 0
    weights = shared() / "weights"  # the shared MobileNetV2 file, as bench_budget passes it
    results.update({"date": date.today().isoformat(), "root": str(root),
                    "machine": {**machine(), "disk_free_gb_at_start": round(shutil.disk_usage(root).free / 1e9, 1)},
                    "data": {"source": str(source), "note": COMPOSED_NOTE, "master_files": master["files"],
                             "variants_per_photo": master["variants_per_photo"],
                             "master_build_seconds": master["seconds"], "build_seconds_this_run": build_s},
                    "commands": {c: "transferlab " + " ".join(argv_for(c, Path("DIR"), Path("OUT"), Path("WEIGHTS")))
                                 for c in COMMANDS},
                    "timeout_s": args.timeout})
    results.setdefault("runs", {})
    for n in sizes:
        cache = root / "cache" / str(n)
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        env = {**os.environ, "TRANSFERLAB_CACHE": str(cache), "TRANSFERLAB_WEIGHTS": str(weights)}
        outdir = root / "out" / str(n)
        shutil.rmtree(outdir, ignore_errors=True)
        print(f"=== {n:,} photos ({folders[n]}), cache {cache}", flush=True)
        row = results["runs"].setdefault(str(n), {})
        for c in [c for c in COMMANDS if c in args.commands]:
            print(f"  {c}: transferlab {' '.join(argv_for(c, folders[n], outdir, weights))}", flush=True)
            r = run_command(argv_for(c, folders[n], outdir, weights), env, outdir, c, args.timeout)
            r["images_per_s"] = round(n / r["seconds"], 1) if r.get("status") == "ok" and r["seconds"] > 0 else None
            r["cache_mb"] = disk_mb(cache)
            r.update(run_details(c, outdir))
            r["date"] = date.today().isoformat()
            r["load_average_after"] = round(os.getloadavg()[0], 2)
            row[c] = r
            print(f"    {r['status']}: {r['seconds']} s, {r['images_per_s']} img/s, peak RSS {r.get('peak_rss_mb')} MB, "
                  f"cache {r['cache_mb']} MB" + (f"\n    {r['tail'][-600:]}" if r.get("tail") else ""), flush=True)
            results["fits"] = fits(results["runs"])
            save(results, out)
        shutil.rmtree(cache, ignore_errors=True)
    results["fits"] = fits(results["runs"])
    results["estimate_1m_224"] = estimate(results["runs"], results["fits"])
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.perf_counter() - t0, 1)
    save(results, out)
    report(results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
