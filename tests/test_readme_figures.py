"""README's speed figures are the ones the benchmark scripts wrote to bench/results/*.json: rerunning
a benchmark means updating the paragraph that quotes it (each names its results file and date)."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _paragraph(start: str) -> str:
    i = README.index(start)
    return re.sub(r"\s+", " ", README[i:README.index("\n\n", i)])


def _results(name: str) -> dict:
    return json.loads((ROOT / "bench" / "results" / name).read_text())


def test_training_speed_paragraph_quotes_bench_train_results():
    text = _paragraph("**Speed.**")
    r = _results("train.json")
    fc = r["feature_caching"]
    assert "`bench/results/train.json`" in text
    if "date" in r:
        assert f"measured {r['date']}" in text
    for figure in (f"{fc['epoch_speedup']:.0f}x faster",
                   f"{fc['cached']['epoch_seconds']:.3f} s vs {fc['uncached']['epoch_seconds']:.3f} s",
                   f"{fc['cached']['total_seconds']:.1f} s vs {fc['uncached']['total_seconds']:.1f} s",
                   f"Trainer at {r['trainer_vs_bare_same_format']:.2f}x",
                   f"{r['trainer_default_vs_bare_default']:.2f}x a bare NCHW loop",
                   f"channels-last {r['channels_last_vs_nchw']:.2f}x NCHW",
                   f"bf16 autocast {r['bf16_vs_fp32_channels_last']:.2f}x fp32"):
        assert figure in text, f"README's training-speed paragraph does not quote {figure!r} (train.json)"


def test_data_loading_paragraph_quotes_bench_loader_results():
    text = _paragraph("`python bench/bench_loader.py` measured")
    r = _results("loader.json")
    small, large = r["epoch_32px"], r["light_224px_from_cache"]
    assert "`bench/results/loader.json`" in text and r["date"] in text
    assert f"load average at {r['machine']['load_average_at_start']:.1f}" in text
    images = int(r["data"].split(": ")[1].split()[0])  # "digits sample, 80% training split: 1438 images, ..."
    for figure in (f"{images:,} digit images",
                   f"{small['decoding_s']:.2f} s decoding and {small['from_cache_s']:.2f} s from the cache",
                   f"{large['workers_0_images_per_s']:.1f} images/s in-process and "
                   f"{large['workers_2_images_per_s']:.1f} images/s with two worker processes",
                   f"starting two cost {r['worker_start_s']:.2f} s a pass"):
        assert figure in text, f"README's data-loading figures do not quote {figure!r} (loader.json)"
