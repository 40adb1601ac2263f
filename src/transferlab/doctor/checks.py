"""Warnings that change decisions: a validation split too small to trust, tiny or imbalanced
classes, images far smaller than the model's input, grayscale mixed with colour.

>>> lo, hi = wilson_interval(0.9, 40)
>>> round(lo, 2), round(hi, 2)
(0.77, 0.96)
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .._stats import wilson_interval

#: a class with fewer images than this (all splits together) is "too small"
MIN_CLASS = 10
#: largest / smallest class from which imbalance is worth a warning
IMBALANCE = 3.0
#: half-width of the 95% interval of a 0.90 accuracy above which the evaluation split is "too small"
MAX_HALF_WIDTH = 0.05
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def _warn(kind: str, message: str, severity: str = "warning", **extra) -> dict:
    return {"kind": kind, "severity": severity, "message": message, **extra}


def dataset_checks(*, classes: Sequence[str], labels: Sequence[int], splits: Sequence[str],
                   sizes: Sequence[tuple[int, int] | None], gray: Sequence[bool], input_size: int,
                   broken: Sequence[dict] = ()) -> list[dict]:
    """The warnings for one dataset (``labels``, ``splits``, ``sizes`` (w, h), ``gray`` per image)."""
    out: list[dict] = []
    n_split = Counter(splits)
    per_class = Counter(labels)
    # 1. the split that measures accuracy
    held = "val" if n_split.get("val") else ("test" if n_split.get("test") else None)
    if held is None:
        out.append(_warn("no-validation", "no validation or test images: nothing measures accuracy on unseen data"))
    for name in ("val", "test"):
        n = n_split.get(name, 0)
        if not n:
            continue
        lo, hi = wilson_interval(0.9, n)
        msg = (f"{name} has {n} images: an accuracy of 0.90 measured on it means {lo:.2f}-{hi:.2f} "
               f"(95% interval)")
        half = (hi - lo) / 2
        if half > MAX_HALF_WIDTH:
            need = next(m for m in range(n, 100_000, 10) if (lambda b: (b[1] - b[0]) / 2)(wilson_interval(0.9, m)) <= MAX_HALF_WIDTH)
            out.append(_warn("small-eval-split", msg + f"; differences between models smaller than that are noise "
                             f"(about {need} images give +-{MAX_HALF_WIDTH:.2f})", split=name, images=n,
                             interval=[round(lo, 4), round(hi, 4)]))
        else:
            out.append(_warn("eval-split", msg, severity="info", split=name, images=n, interval=[round(lo, 4), round(hi, 4)]))
    # 2. class sizes and balance
    small = {classes[c]: per_class.get(c, 0) for c in range(len(classes)) if per_class.get(c, 0) < MIN_CLASS}
    if small:
        listed = ", ".join(f"{c} ({n})" for c, n in sorted(small.items(), key=lambda kv: kv[1]))
        out.append(_warn("small-classes", f"{len(small)} class(es) with fewer than {MIN_CLASS} images: {listed}; "
                         f"a model cannot learn or be measured on so few", classes=small))
    counts = [per_class.get(c, 0) for c in range(len(classes))]
    if counts and min(counts) > 0:
        ratio = max(counts) / min(counts)
        if ratio >= IMBALANCE:
            big, little = classes[counts.index(max(counts))], classes[counts.index(min(counts))]
            out.append(_warn("imbalance", f"classes are imbalanced {ratio:.1f}x ({big}: {max(counts)}, {little}: "
                             f"{min(counts)}): accuracy favours the big classes; read per-class recall or use "
                             f"class weights", ratio=round(ratio, 2)))
    # 3. image size against the model input
    sides = sorted(min(s) for s in sizes if s)
    if sides:
        median = sides[len(sides) // 2]
        if median * 2 <= input_size:
            out.append(_warn("small-images", f"the median image is {median} px on its short side, "
                             f"{input_size / median:.0f}x below the {input_size} px the pretrained backbones were "
                             f"trained at: training upscales such photos to 128 px for them (not to {input_size}: "
                             f"more pixels add compute, not information) and trains from-scratch nets near "
                             f"{median} px; --input-size overrides", median_side=median, input_size=input_size))
    # 4. grayscale mixed with colour
    n_gray = sum(bool(g) for g in gray)
    if 0 < n_gray < len(gray):
        by_class = Counter(classes[y] for y, g in zip(labels, gray) if g)
        share = {c: round(by_class[c] / per_class[classes.index(c)], 3) for c in by_class}
        skew = max(share.values()) - min(share.get(c, 0.0) for c in classes)
        where = ", ".join(f"{c} {by_class[c]}/{per_class[classes.index(c)]}" for c in sorted(by_class, key=lambda c: -share[c]))
        msg = f"{n_gray} grayscale image(s) among {len(gray) - n_gray} colour ones ({where})"
        if skew >= 0.2:
            msg += ": grayscale is concentrated in some classes, so a model can learn colour instead of content"
        else:
            msg += ": convert all to one kind or augment with random grayscale"
        out.append(_warn("mixed-color", msg, grayscale=n_gray, by_class=dict(by_class)))
    if broken:
        out.append(_warn("broken-files", f"{len(broken)} unreadable file(s) skipped, e.g. {broken[0]['path']}: "
                         f"{broken[0]['reason']}", files=len(broken)))
    return out
