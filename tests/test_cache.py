"""The caches on disk: row files written in chunks and read a batch at a time, the image cache's
size limit and least-recently-used eviction, and ``transferlab cache``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from transferlab import cli
from transferlab._rows import RowFile, RowWriter
from transferlab.data import ImageDataset, data_config, load_data
from transferlab.data import cache as cache_mod
from transferlab.data.cache import (CacheLimitError, build_cache, cache_usage, cached_arrays, clear_caches, evict,
                                    max_cache_bytes, remove_unused)
from transferlab.data.images import load_image
from transferlab.errors import DataError


def test_row_files_round_trip_in_chunks_and_reads_in_any_order(tmp_path):
    rows = np.random.default_rng(0).normal(size=(1000, 3, 4)).astype(np.float32)
    with RowWriter(tmp_path / "r.npy", n=1000, row_shape=(3, 4)) as w:
        for start in range(0, 1000, 300):
            w.write(rows[start:start + 300])
    assert np.array_equal(np.load(tmp_path / "r.npy"), rows)  # a plain .npy file
    f = RowFile(tmp_path / "r.npy")
    assert (len(f), f.shape, f.dtype) == (1000, (1000, 3, 4), np.float32)
    idx = [999, 3, 3, 500, 0]
    assert np.array_equal(f.take(idx), rows[idx])
    assert np.array_equal(f.rows(10, 20), rows[10:20])
    assert np.array_equal(np.concatenate([c for _, c in f.chunks(128)]), rows)
    assert f.take([]).shape == (0, 3, 4)
    with RowWriter(tmp_path / "e.npy", n=2, row_shape=(3, 4)) as w:  # an empty chunk is no rows, not an error
        w.write(rows[:2])
        w.write(rows[:0])
    assert np.array_equal(np.load(tmp_path / "e.npy"), rows[:2])
    (tmp_path / "e.npy").unlink()
    with pytest.raises(ValueError, match="do not fit"):
        with RowWriter(tmp_path / "s.npy", n=2, row_shape=(3, 4)) as w:
            w.write(rows[:3])
    with pytest.raises(ValueError, match="1 of 2 rows"):
        with RowWriter(tmp_path / "t.npy", n=2, row_shape=(3, 4)) as w:
            w.write(rows[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npy"]  # no partial file, no temp file


def test_reading_every_row_leaves_none_resident(tmp_path):
    """A map kept open would count every page read in the process's memory; RowFile's do not."""
    n = 64 * 1024 * 1024 // (64 * 1024)  # 64 MiB of 64 KiB rows
    with RowWriter(tmp_path / "big.npy", n=n, row_shape=(64 * 1024,), dtype=np.uint8) as w:
        for _ in range(n // 64):
            w.write(np.full((64, 64 * 1024), 7, np.uint8))
    f = RowFile(tmp_path / "big.npy")

    def rss_kb() -> int:
        with open("/proc/self/statm") as s:
            return int(s.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    before = rss_kb()
    total = 0
    for start in range(0, n, 64):
        total += int(f.take(np.arange(start, start + 64))[:, 0].sum())
    assert total == 7 * n
    assert rss_kb() - before < 16 * 1024  # far less than the 64 MiB read


def test_the_image_cache_is_built_in_chunks_equal_to_decoding(digits_dir, tmp_path, monkeypatch, logged):
    monkeypatch.setattr(cache_mod, "CHUNK", 7)  # several chunks and a partial last one (30 = 4 x 7 + 2)
    paths = [p for p, _ in load_data(digits_dir, scan=False).train[:30]]
    said = logged
    path = build_cache(paths, 20, cache_dir=tmp_path, workers=2, progress=False)
    arr = np.load(path)
    assert arr.shape == (30, 20, 20, 3)
    for i in (0, 6, 7, 29):
        assert np.array_equal(arr[i], load_image(paths[i], 20, "bilinear"))
    assert len(said) == 1 and "image cache: 30 images at 20 px, 36.1 kB in" in said[0] and "of at most 20.00 GB" in said[0]
    said.clear()
    assert build_cache(paths, 20, cache_dir=tmp_path, progress=False) == path
    assert said == []  # reused: nothing built, nothing said
    cfg = data_config(20, (0.5,) * 3, (0.25,) * 3, crop_pct=1.0)  # load size 20
    ds = ImageDataset(load_data(digits_dir, scan=False).train[:30], cfg, cache_dir=tmp_path, progress=False)
    assert np.array_equal(ds.cached_images([29, 0]), arr[[29, 0]])
    assert np.array_equal(ds.load(6).permute(1, 2, 0).numpy(), arr[6])
    monkeypatch.setattr(cache_mod, "CHUNK", 10)  # a list that is a whole number of chunks (found at 192,000 = 750 x 256)
    exact = build_cache(paths, 21, cache_dir=tmp_path, workers=2, progress=False)
    assert np.load(exact).shape == (30, 21, 21, 3)


def test_least_recently_used_arrays_are_evicted_past_the_limit(digits_dir, tmp_path, monkeypatch, logged):
    paths = [p for p, _ in load_data(digits_dir, scan=False).train[:20]]
    one = 20 * 30 * 30 * 3 + 128  # an array of 20 images at 30 px with its header
    built = []
    for k in range(3):  # three file lists: three arrays, used in order a, b, c
        built.append(build_cache(paths[k:k + 18] + paths[:2], 30, cache_dir=tmp_path, progress=False))
        t = time.time() - 100 + 10 * k
        os.utime(built[-1], (t, t))
    assert cached_arrays(tmp_path) == built
    build_cache(paths[:18] + paths[:2], 30, cache_dir=tmp_path, progress=False)  # a used again: now the newest
    assert cached_arrays(tmp_path)[-1] == built[0]
    said = logged
    # room for three arrays: a fourth build removes the least recently used one (b), keeps c and a
    monkeypatch.setenv("TRANSFERLAB_CACHE_MAX_GB", repr(3.2 * one / 1e9))
    fourth = build_cache(paths[5:20] + paths[:5], 30, cache_dir=tmp_path, progress=False)
    assert cached_arrays(tmp_path) == [built[2], built[0], fourth]
    assert "1 least recently used array(s) removed" in said[-1]
    # evict() keeps what it is told to keep, and stops once the rest fits
    assert evict(tmp_path, 0, keep=[fourth]) != [] and cached_arrays(tmp_path) == [fourth]


def test_an_array_a_dataset_reads_is_never_evicted_or_cleared_by_another_process(digits_dir, tmp_path, monkeypatch):
    """A 240,000-photo training run lost its array (FileNotFoundError mid-epoch) when a doctor run
    beside it built its own and evicted the least recently used one: the one being read."""
    import gc

    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path))
    samples = load_data(digits_dir, scan=False).train[:10]
    cfg = data_config(32, (0.5,) * 3, (0.25,) * 3, crop_pct=1.0)
    ds = ImageDataset(samples, cfg, cache_dir=tmp_path / "images", progress=False)
    array = Path(ds.cache_file)
    other = [sys.executable, "-c", "import sys; from transferlab.data.cache import evict, clear_caches; "
             "print(len(evict(sys.argv[1], 0)), clear_caches(['images'], sys.argv[2]))",
             str(tmp_path / "images"), str(tmp_path)]
    out = subprocess.run(other, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "0"] and array.exists()  # in use: neither evicted nor cleared
    assert not remove_unused(array) and array.exists()  # nor by this process's own eviction
    assert ds.cached_images([0, 9]).shape == (2, 32, 32, 3)
    del ds
    gc.collect()  # the dataset is gone: its hold is released
    out = subprocess.run(other, capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1" and not array.exists() and not Path(f"{array}.lock").exists()


def test_an_array_over_the_limit_is_not_built_and_the_dataset_decodes_instead(digits_dir, tmp_path, monkeypatch, capsys):
    samples = load_data(digits_dir, scan=False).train[:10]
    monkeypatch.setenv("TRANSFERLAB_CACHE_MAX_GB", "0.00001")  # 10 kB: less than 10 images at 32 px
    with pytest.raises(CacheLimitError, match="more than its limit of 0.00 GB"):
        build_cache([p for p, _ in samples], 32, cache_dir=tmp_path, progress=False)
    cfg = data_config(32, (0.5,) * 3, (0.25,) * 3)
    ds = ImageDataset(samples, cfg, cache_dir=tmp_path, progress=False)
    assert not ds.cached and ds[3][0].shape == (3, 32, 32)
    assert "decoding each image when it is used instead" in capsys.readouterr().out
    assert list(tmp_path.glob("*.npy")) == []
    for bad in ("0", "-1", "lots"):
        monkeypatch.setenv("TRANSFERLAB_CACHE_MAX_GB", bad)
        with pytest.raises(DataError, match="GB"):
            max_cache_bytes()
    monkeypatch.delenv("TRANSFERLAB_CACHE_MAX_GB")
    assert max_cache_bytes() == 20e9 and max_cache_bytes(1.5) == 1.5e9


def test_cache_command_lists_sizes_and_clears(digits_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path))
    paths = [p for p, _ in load_data(digits_dir, scan=False).train[:10]]
    build_cache(paths, 32, progress=False)
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "x.npz").write_bytes(b"0" * 1000)
    (tmp_path / "train-features" / "phase-999999999-ab").mkdir(parents=True)  # left by a process that is gone
    (tmp_path / "train-features" / f"phase-{os.getpid()}-cd").mkdir()  # a phase running now
    (tmp_path / "sample-cifar10").mkdir()
    rows = {r["kind"]: r for r in cache_usage()}
    assert rows["images"]["entries"] == 1 and rows["images"]["bytes"] == 10 * 32 * 32 * 3 + 128
    assert rows["features"]["bytes"] == 1000 and rows["train-features"]["entries"] == 2
    assert rows["samples"]["entries"] == 1
    capsys.readouterr()  # the build's log line
    assert cli.main(["cache", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["root"] == str(tmp_path) and [r["kind"] for r in listing["caches"]] == list(rows)
    assert cli.main(["cache"]) == 0 and "images" in capsys.readouterr().out
    assert cli.main(["cache", "--clear", "images", "train-features"]) == 0
    assert "cleared images, train-features: 30.8 kB freed" in capsys.readouterr().out
    rows = {r["kind"]: r for r in cache_usage()}
    assert rows["images"]["entries"] == 0 and rows["features"]["entries"] == 1
    assert [p.name for p in (tmp_path / "train-features").iterdir()] == [f"phase-{os.getpid()}-cd"]
    assert cli.main(["cache", "--clear", "nonsense"]) == 2
    assert "unknown cache 'nonsense'" in capsys.readouterr().err
    assert clear_caches(["all"]) > 0 and not (tmp_path / "sample-cifar10").exists()


def test_cache_max_gb_flag_sets_the_limit_for_the_command(monkeypatch, capsys, tmp_path):
    seen = {}
    monkeypatch.delenv("TRANSFERLAB_CACHE_MAX_GB", raising=False)

    def fake_run(args):
        seen["limit"] = max_cache_bytes()
        return 0

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions[0].choices.values():
        action.set_defaults(_run=fake_run)
    assert cli.main(["train", str(tmp_path), "--cache-max-gb", "3.5"]) == 0
    assert seen["limit"] == 3.5e9
    monkeypatch.delenv("TRANSFERLAB_CACHE_MAX_GB")
    with pytest.raises(SystemExit):
        cli.main(["doctor", str(tmp_path), "--cache-max-gb", "0"])
    assert "must be more than 0 GB" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["models", "--cache-max-gb", "1"])  # a command that caches nothing has no such flag
