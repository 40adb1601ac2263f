"""Whole-array batches from the image cache: the same numbers as the per-image transforms, and
per-sample randomness that depends on (seed, epoch, index) only."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferlab.data import ImageDataset, build_transform, data_config, load_data
from transferlab.data.batches import CachedBatches, mix_seeds, sample_uniforms
from transferlab.training.distributed import DistInfo
from transferlab.training.sampling import EpochSampler, mix_seed, train_loader, val_loader

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def cached(digits_dir, tmp_path_factory):
    splits = load_data(digits_dir, progress=False)
    cfg = data_config(28, MEAN, STD, crop_pct=28 / 32)  # load 32, crop 28: a real centre crop
    ds = ImageDataset(splits.train[:40], cfg, build_transform(cfg, train=False),
                      cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    return ds


def test_unaugmented_batches_equal_the_per_image_eval_transform(cached):
    keys = [(0, i) for i in (5, 0, 17, 3)]
    x, y = next(iter(CachedBatches(cached, keys, batch_size=8, augment="none")))
    expected = torch.stack([cached[i][0] for _, i in keys])
    assert x.shape == (4, 3, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x, expected)  # bit for bit
    assert y.tolist() == [cached.samples[i][1] for _, i in keys]


def test_shift_depends_on_seed_epoch_and_index_only(cached):
    keys = [(1, i) for i in range(10)] + [(2, i) for i in range(10)]
    a = torch.cat([x for x, _ in CachedBatches(cached, keys, batch_size=3, seed=7, augment="shift")])
    b = torch.cat([x for x, _ in CachedBatches(cached, list(reversed(keys)), batch_size=20, seed=7,
                                               augment="shift")]).flip(0)
    assert torch.equal(a, b)  # batch size and order do not matter
    assert not torch.equal(a[:10], a[10:])  # another epoch, another augmentation
    c = torch.cat([x for x, _ in CachedBatches(cached, keys, batch_size=20, seed=8, augment="shift")])
    assert not torch.equal(a, c)  # another seed too
    plain = torch.cat([x for x, _ in CachedBatches(cached, keys, batch_size=20, augment="none")])
    assert not torch.equal(a, plain)
    # shifting and flipping move pixels, they do not blend them: every value is one of the image's
    for k in range(10):
        assert set(torch.unique(a[k]).tolist()) <= set(torch.unique(plain[k]).tolist())


def test_shift_moves_and_flips_images(cached):
    u = sample_uniforms(3, np.ones(400, np.int64), np.arange(400), 3)
    assert u.shape == (400, 3) and (u >= 0).all() and (u < 1).all()
    assert 0.4 < (u[:, 0] < 0.5).mean() < 0.6  # about half the images flipped
    assert len({round(v, 6) for v in u[:, 1]}) > 300  # no repeated draws
    assert mix_seed(1, 2, 3) == int(mix_seeds(1, 2, 3)) & 0x7FFFFFFFFFFFFFFF


def test_training_loaders_take_the_batched_path_when_they_can(cached):
    dist = DistInfo()
    fast = train_loader(cached, batch_size=8, seed=0, dist=dist, seeded=True, augment="shift")
    assert isinstance(fast, CachedBatches) and isinstance(fast.sampler, EpochSampler)
    slow = train_loader(cached, batch_size=8, seed=0, dist=dist, seeded=True, augment="light")
    assert isinstance(slow, torch.utils.data.DataLoader)  # per-image transforms for the other presets
    assert isinstance(val_loader(cached, batch_size=8, seed=0, dist=dist), CachedBatches)
    assert sum(len(y) for _, y in fast) == len(cached)


def test_cached_batches_refuse_what_they_cannot_do(cached, digits_dir):
    with pytest.raises(ValueError, match="batched form"):
        CachedBatches(cached, [(0, 0)], batch_size=2, augment="strong")
    cfg = data_config(32, MEAN, STD, crop_pct=1.0)
    uncached = ImageDataset(load_data(digits_dir, progress=False).train[:4], cfg)
    with pytest.raises(ValueError, match="cache_dir"):
        CachedBatches(uncached, [(0, 0)], batch_size=2)
