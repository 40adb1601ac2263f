"""Transforms (torchvision v2), the image cache, ImageDataset and make_loader."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import transferlab.data.cache as cache_mod
import transferlab.data.dataset as dataset_mod
from transferlab.data import (
    ImageDataset,
    build_cache,
    build_transform,
    data_config,
    default_cache_dir,
    load_data,
    make_loader,
)
from transferlab.errors import ConfigError, DataError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_data_config_load_size_and_validation():
    cfg = data_config(224, MEAN, STD)
    assert cfg == {"input_size": 224, "load_size": 256, "mean": list(MEAN), "std": list(STD),
                   "crop_pct": 0.875, "interpolation": "bilinear", "resize": "crop"}
    assert data_config(32, 0.5, 0.5, crop_pct=1.0)["load_size"] == 32
    assert data_config(299, MEAN, STD, crop_pct=0.9, interpolation="bicubic")["load_size"] == 332
    for bad in (dict(crop_pct=0), dict(crop_pct=1.5), dict(interpolation="cubic-ish")):
        with pytest.raises(ConfigError):
            data_config(224, MEAN, STD, **bad)


@pytest.mark.parametrize("augment", ["none", "light", "strong"])
def test_transform_shapes_and_normalisation(augment):
    cfg = data_config(32, MEAN, STD)  # load_size 37
    x = torch.randint(0, 256, (3, 37, 37), dtype=torch.uint8)
    out = build_transform(cfg, train=True, augment=augment)(x)
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 32, 32)
    ev = build_transform(cfg, train=False, augment=augment)
    a, b = ev(x), ev(x)
    assert torch.equal(a, b)  # eval is deterministic whatever the preset
    crop = x[:, 2:34, 2:34].float() / 255
    expected = (crop - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    assert torch.allclose(a, expected, atol=1e-5)


def test_train_augmentation_is_random_and_bad_name_lists_choices():
    cfg = data_config(32, MEAN, STD)
    x = torch.randint(0, 256, (3, 37, 37), dtype=torch.uint8)
    t = build_transform(cfg, train=True, augment="strong")
    torch.manual_seed(0)
    outs = [t(x) for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    with pytest.raises(ConfigError, match="none, shift, light, strong"):
        build_transform(cfg, train=True, augment="heavy")


def _cfg32():
    return data_config(32, MEAN, STD)


def test_cached_epochs_identical_and_never_decode(digits_dir, tmp_path, monkeypatch):
    s = load_data(digits_dir, scan=False)
    cfg = _cfg32()
    plain = ImageDataset(s.val, cfg)
    cached = ImageDataset(s.val, cfg, cache_dir=tmp_path / "c", progress=False)
    assert cached.cached and not plain.cached
    arr = np.load(cached.cache_file, mmap_mode="r")
    assert arr.shape == (len(s.val), 37, 37, 3) and arr.dtype == np.uint8
    uncached = [plain[i] for i in range(len(plain))]

    def no_decoding(*a, **k):
        raise AssertionError("decoded an image although it is cached")

    monkeypatch.setattr(dataset_mod, "load_image", no_decoding)
    monkeypatch.setattr(cache_mod, "load_image", no_decoding)
    for _ in range(2):  # two epochs, and a second dataset (a later run) on the same cache
        again = ImageDataset(s.val, cfg, cache_dir=tmp_path / "c", progress=False)
        assert again.cache_file == cached.cache_file
        for i, (x, y) in enumerate(uncached):
            cx, cy = again[i]
            assert cy == y and torch.equal(cx, x)
    assert [p.name for p in (tmp_path / "c").glob("*.npy")] == [Path(cached.cache_file).name]  # (+ its .lock)


def test_mixed_size_photos_cache_matches_decoding(photos_dir, tmp_path):
    photos = sorted(str(p) for p in photos_dir.iterdir() if p.suffix.lower() in {".jpg", ".png", ".bmp"})
    samples = [(p, i % 2) for i, p in enumerate(photos)]
    cfg = data_config(64, MEAN, STD, interpolation="bicubic")
    plain = ImageDataset(samples, cfg)
    cached = ImageDataset(samples, cfg, cache_dir=tmp_path, workers=2, progress=False, in_memory=True)
    for i in range(len(samples)):
        assert torch.equal(plain.load(i), cached.load(i))
        assert plain.load(i).shape == (3, 73, 73)


def test_changed_file_invalidates_cache(digits_dir, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(digits_dir, data)
    s = load_data(data, scan=False)
    cfg = _cfg32()
    first = ImageDataset(s.train, cfg, cache_dir=tmp_path / "c", progress=False)
    target, _ = s.train[5]
    Image.new("L", (32, 32), 255).save(target)  # new content (white)
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = ImageDataset(s.train, cfg, cache_dir=tmp_path / "c", progress=False)
    assert second.cache_file != first.cache_file
    assert int(second.load(5).min()) == 255 and int(first.load(5).min()) < 255
    assert torch.equal(second.load(4), first.load(4))
    # a different size is a different array too
    other = ImageDataset(s.train, data_config(24, MEAN, STD), cache_dir=tmp_path / "c", progress=False)
    assert other.cache_file not in (first.cache_file, second.cache_file)


def test_cache_build_is_atomic(digits_dir, tmp_path, monkeypatch):
    s = load_data(digits_dir, scan=False)
    paths = [p for p, _ in s.train[:20]]
    real = cache_mod.load_image
    calls = {"n": 0}

    def dies_midway(p, *a):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt  # like Ctrl-C while building
        return real(p, *a)

    monkeypatch.setattr(cache_mod, "load_image", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        build_cache(paths, 37, cache_dir=tmp_path, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []  # no half-written array, no temp file
    monkeypatch.setattr(cache_mod, "load_image", real)
    path = build_cache(paths, 37, cache_dir=tmp_path, workers=2, progress=False)
    assert np.load(path).shape == (20, 37, 37, 3)
    # a corrupt file under the right name is rebuilt, not trusted
    path.write_bytes(b"garbage")
    assert np.load(build_cache(paths, 37, cache_dir=tmp_path, progress=False)).shape == (20, 37, 37, 3)


def test_cache_broken_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    with pytest.raises(DataError, match="bad.jpg: zero bytes"):
        build_cache([str(bad)], 37, cache_dir=tmp_path / "c", progress=False)


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "images"
    monkeypatch.delenv("TRANSFERLAB_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "transferlab" / "images"


def test_loader_settings_and_seeded_order(digits_dir, tmp_path):
    s = load_data(digits_dir, scan=False)
    cfg = _cfg32()
    ds = ImageDataset(s.train, cfg, cache_dir=tmp_path, progress=False)

    def order(seed):
        return torch.cat([y for _, y in make_loader(ds, batch_size=64, shuffle=True, seed=seed)]).tolist()

    assert order(0) == order(0) != order(1)
    assert sorted(order(0)) == sorted(ds.targets)
    loader = make_loader(ds, batch_size=16, shuffle=False)
    assert loader.num_workers == 0  # cached small images: in-process is faster
    assert loader.pin_memory == torch.cuda.is_available()
    xb, yb = next(iter(loader))
    assert xb.shape == (16, 3, 32, 32) and yb.tolist() == ds.targets[:16]
    plain = make_loader(ImageDataset(s.train, cfg), batch_size=16, shuffle=True)
    assert plain.num_workers == min(2, os.cpu_count()) and plain.persistent_workers is False  # opt-in only
    kept = make_loader(ImageDataset(s.train, cfg), batch_size=16, shuffle=True, persistent=True)
    assert kept.persistent_workers == (kept.num_workers > 0)
    big = ImageDataset(s.train[:3], data_config(224, MEAN, STD), cache_dir=tmp_path, progress=False)
    assert make_loader(big, batch_size=2, shuffle=False).num_workers == min(2, os.cpu_count())
    with pytest.raises(ConfigError):
        make_loader(ds, batch_size=0, shuffle=False)


def test_loader_with_workers_matches_in_process(digits_dir, tmp_path):
    s = load_data(digits_dir, scan=False)
    ds = ImageDataset(s.val, _cfg32(), cache_dir=tmp_path, progress=False)
    a = [x for x, _ in make_loader(ds, batch_size=20, shuffle=True, seed=5, workers=0)]
    b = [x for x, _ in make_loader(ds, batch_size=20, shuffle=True, seed=5, workers=1)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
