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


def test_peers_table_quotes_bench_peers_results():
    i = README.index("Beside the peers (`bench/bench_peers.py`")
    text = README[i:README.index("\n\n", README.index("| task |", i) )]
    r = _results("peers.json")
    jobs = {k: j for k, j in r["jobs"].items() if j.get("status") == "ok"}
    assert f"`bench/results/peers.json`, {r['date']}" in text
    acc = lambda job: f"{jobs[job]['test_accuracy']:.4f}".rstrip("0")  # noqa: E731
    wall = lambda job: f"{jobs[job]['wall_s']:.0f} s"  # noqa: E731
    ratio = {c["transferlab"] + "/" + c["peer"]: c["wall_time_ratio_peer_over_transferlab"] for c in r["comparisons"]}
    for figure in (acc("keras_cnn2"), acc("keras_cnn3"), acc("tl_cnn_bn"), acc("tl_cnn_dropout"), acc("keras_fingers"),
                   acc("tl_fingers"), f"{acc('plain_cars')} in {wall('plain_cars')}",
                   f"{acc('tl_frozen30_cars')} in {wall('tl_frozen30_cars')} ({ratio['tl_frozen30_cars/plain_cars']:.1f}x)",
                   acc("fastai_cifar"), acc("fastai_cars"), acc("tl_finetune_cifar"), acc("tl_finetune_cars"),
                   f"{acc('tl_default_cars')} in {wall('tl_default_cars')}", f"{acc('fastai_cars')} in {wall('fastai_cars')}",
                   f"{ratio['tl_finetune_cifar/fastai_cifar']:.1f}x faster", f"{ratio['tl_fingers/keras_fingers']:.1f}x faster"):
        assert figure in text, f"README's peers table does not quote {figure!r} (peers.json)"


def test_none_of_these_paragraph_quotes_bench_confidence_results():
    text = _paragraph('**"None of these"**')
    rows = {r["name"]: r for r in _results("confidence.json")["rows"]}
    cars, cifar = rows["cars"], rows["cifar10-subset"]
    assert "results/confidence.json" in text and cars["date"] in text
    for figure in (f"accepts {cars['test_accepted']:.1%} of the cars test photos",
                   f"rejects {cars['ood_rejected']:.1%} of the {cars['ood_images']:,} flower photos",
                   f"AUROC {cars['ood_auroc']['max_prob']:.3f} with the top probability",
                   f"{cars['ood_auroc']['energy']:.3f} with the energy",
                   f"AUROC {cifar['ood_auroc']['max_prob']:.3f}, {cifar['ood_rejected']:.1%} rejected"):
        assert figure in text, figure
