"""transferlab.train on small real images (the digits sample) with tiny models."""
from __future__ import annotations

import csv
import json
import os

import pytest
import torch

import transferlab
from transferlab import runfolder
from transferlab.checkpoint import load_model, read_meta
from transferlab.data import load_data
from transferlab.errors import ConfigError
from transferlab.training import Callback, Run, train
from transferlab.training.api import class_weight_tensor

FAST = dict(input_size=32, batch_size=32, progress=False, cache=True)


@pytest.fixture(scope="session", autouse=True)
def _image_cache(tmp_path_factory):
    old = os.environ.get("TRANSFERLAB_CACHE")
    os.environ["TRANSFERLAB_CACHE"] = str(tmp_path_factory.mktemp("tl-cache"))
    yield
    if old is None:
        os.environ.pop("TRANSFERLAB_CACHE", None)
    else:
        os.environ["TRANSFERLAB_CACHE"] = old


@pytest.fixture(scope="session")
def splits(digits_dir):
    from transferlab.data import load_data

    return load_data(digits_dir, val_ratio=0.2, seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny(splits):
    """A smaller split (10 train + 3 val images per class) for the tests that train several runs."""
    import dataclasses

    def take(samples, k):
        seen: dict[int, int] = {}
        out = []
        for p, y in samples:
            seen[y] = seen.get(y, 0) + 1
            if seen[y] <= k:
                out.append((p, y))
        return out

    return dataclasses.replace(splits, train=take(splits.train, 10), val=take(splits.val, 3))


def strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def assert_same_history(a, b, tol=0.0):
    assert len(a) == len(b)
    for ra, rb in zip(strip(a), strip(b)):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], abs=tol, rel=0), (k, ra, rb)


class Kill(Callback):
    """Simulates a killed process: raises at the start of epoch ``at``."""

    def __init__(self, at, exc=KeyboardInterrupt):
        self.at, self.exc = at, exc

    def on_epoch_begin(self, trainer, epoch):
        if epoch == self.at:
            raise self.exc()


@pytest.mark.parametrize("recipe", ["cnn_base", "cnn_aug", "cnn_bn", "cnn_dropout", "resnet_scratch", "resnet34_scratch"])
def test_scratch_recipes_learn(recipe, tiny, tmp_path):
    run = train(tiny, model=recipe, epochs=3, lr=3e-3, augment="none", schedule="constant",
                run_dir=tmp_path, **FAST)
    losses = [r["train_loss"] for r in run.history]
    assert losses[-1] < losses[0], losses
    assert run.best_checkpoint.is_file()


def test_run_folder_files_config_history_and_checkpoints(splits, tmp_path):
    run = transferlab.train(splits, model="cnn_bn", epochs=2, run_dir=tmp_path, seed=3, **FAST)
    assert isinstance(run, Run) and run.dir == tmp_path / "cnn_bn"
    for f in ("config.json", "history.csv", "best.safetensors", "last.safetensors", "last_state.pt", "train.log"):
        assert (run.dir / f).is_file(), f
    cfg = json.loads((run.dir / "config.json").read_text())
    assert cfg["model"] == "cnn_bn" and cfg["epochs"] == 2 and cfg["seed"] == 3 and cfg["lr"] == 3e-3
    assert cfg["augment"] == "shift"  # the recipe's default
    assert cfg["classes"] == [str(d) for d in range(10)] and cfg["num_classes"] == 10
    assert cfg["data_cfg"]["input_size"] == 32 and "mean" in cfg["data_cfg"]
    assert cfg["split_counts"] == {"train": 240, "val": 60, "test": 0}
    with open(run.dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    log = (run.dir / "train.log").read_text()
    assert "epoch 1/2" in log and "val_acc" in log
    meta = read_meta(run.dir, "last")
    assert meta["recipe"] == "cnn_bn" and meta["num_classes"] == 10 and meta["epoch"] == 2
    assert meta["classes"] == cfg["classes"] and meta["data_cfg"]["input_size"] == 32
    assert set(meta["metrics"]) >= {"val_loss", "val_acc", "train_loss", "lr"}
    model, meta_best = load_model(run.dir)
    assert meta_best["epoch"] == run.best["epoch"]
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    again = Run.load(run.dir)
    assert again.history == run.history and again.classes == run.classes


def test_run_best_is_the_checkpointed_epoch(tmp_path):
    """With min_delta, a slightly better later epoch is not saved as best: Run.best must agree with the file."""
    from transferlab.checkpoint import save_model
    from transferlab.models import create_model

    d = tmp_path / "run"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"monitor": "val_loss", "min_delta": 0.01, "classes": ["a", "b"]}))
    (d / "history.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n"
                                   "1,0.9,0.5,0.500,0.8,0.1,1.0\n2,0.8,0.6,0.495,0.8,0.1,1.0\n")
    assert Run.load(d).best is None  # nothing saved yet
    save_model(d / "best.safetensors", create_model("cnn_base", 2, input_size=32), {"recipe": "cnn_base", "epoch": 1})
    assert Run.load(d).best["epoch"] == 1


def test_existing_run_is_not_overwritten_unless_asked(tiny, tmp_path):
    train(tiny, model="cnn_base", epochs=1, run_dir=tmp_path, **FAST)
    with pytest.raises(ConfigError, match="--overwrite"):
        train(tiny, model="cnn_base", epochs=1, run_dir=tmp_path, **FAST)
    run = train(tiny, model="cnn_base", epochs=1, run_dir=tmp_path, overwrite=True, **FAST)
    assert len(run.history) == 1
    other = train(tiny, model="cnn_base", epochs=1, run_dir=tmp_path, name="second", **FAST)
    assert other.dir.name == "second"
    finished = train(tiny, model="cnn_base", epochs=1, run_dir=tmp_path, resume=True, **FAST)  # nothing to do
    assert finished.history == run.history


def test_workers_0_loads_a_folder_in_process(digits_dir, tmp_path, capsys):
    """--workers 0 (no loader processes) is accepted for a folder too: the scan then decodes in this
    process instead of refusing the value it documents; a negative count is a one-line error."""
    from transferlab.cli import main

    run = train(digits_dir, model="cnn_base", epochs=1, workers=0, run_dir=tmp_path, name="api", **FAST)
    assert len(run.history) == 1 and run.config["workers"] == 0
    assert main(["train", str(digits_dir), "--model", "cnn_base", "--epochs", "1", "--input-size", "32",
                 "--workers", "0", "--run-dir", str(tmp_path), "--name", "cli", "--no-progress"]) == 0
    assert (tmp_path / "cli" / "best.safetensors").is_file()
    assert main(["train", str(digits_dir), "--workers", "-1", "--run-dir", str(tmp_path), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().endswith("--workers must be >= 0, got -1")


def test_same_seed_same_history_with_or_without_workers(tiny, tmp_path):
    kw = dict(model="cnn_dropout", epochs=2, augment="light", run_dir=tmp_path, **FAST)
    a = train(tiny, name="a", seed=7, workers=0, **kw)
    b = train(tiny, name="b", seed=7, workers=2, **kw)  # augmentation in worker processes: still the same
    c = train(tiny, name="c", seed=8, workers=0, **kw)
    assert_same_history(a.history, b.history)
    assert strip(a.history) != strip(c.history)


def test_kill_and_resume_gives_the_uninterrupted_history(tiny, tmp_path, capsys):
    kw = dict(model="cnn_bn", epochs=4, augment="light", reduce_lr=1, reduce_lr_factor=0.5, early_stopping=3,
              schedule="cosine", warmup=1, optimizer="sgd", lr=0.05, run_dir=tmp_path, **FAST)
    full = train(tiny, name="full", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(tiny, name="killed", callbacks=[Kill(3)], **kw)
    out = capsys.readouterr().out
    assert "2 completed epoch(s) are saved" in out and "--resume" in out
    assert len(Run.load(tmp_path / "killed").history) == 2
    assert read_meta(tmp_path / "killed", "last")["epoch"] == 2
    resumed = train(tiny, name="killed", resume=True, **kw)
    assert_same_history(resumed.history, full.history)
    assert read_meta(resumed.dir)["epoch"] == read_meta(full.dir)["epoch"]


def test_resume_needs_no_pretrained_weights_file(tiny, tmp_path):
    """The saved state holds every tensor: a resumed pretrained run does not read its weights file again."""
    from transferlab.models import create_model

    weights = tmp_path / "w.pth"  # a weights file of the right architecture (real ones: tests/test_models_weights.py)
    torch.save(create_model("mobilenet_v1_025_tf", 10, pretrained=False).backbone.state_dict(), weights)
    kw = dict(model="mobilenet_v1_025_tf", weights=str(weights), freeze="frozen", epochs=2, run_dir=tmp_path, **FAST)
    with pytest.raises(KeyboardInterrupt):
        train(tiny, name="run", callbacks=[Kill(2)], **kw)
    os.remove(weights)  # moved, or an offline machine without the hub cache
    resumed = train(tiny, name="run", resume=True, **kw)
    assert [r["epoch"] for r in resumed.history] == [1, 2]


def test_crash_inside_a_callback_resumes_from_the_last_committed_epoch(tiny, tmp_path):
    class Boom(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                raise RuntimeError("boom")

    kw = dict(model="cnn_base", epochs=3, run_dir=tmp_path, **FAST)
    full = train(tiny, name="full", **kw)
    with pytest.raises(RuntimeError):
        train(tiny, name="crash", callbacks=[Boom()], **kw)
    resumed = train(tiny, name="crash", resume=True, **kw)
    assert_same_history(resumed.history, full.history)


def test_fine_tune_continues_history_with_lower_lr_and_resumes(tiny, tmp_path):
    kw = dict(model="cnn_bn", epochs=2, fine_tune=2, lr=2e-3, augment="none", schedule="constant", warmup=0,
              run_dir=tmp_path, **FAST)
    full = train(tiny, name="full", **kw)
    assert [r["epoch"] for r in full.history] == [1, 2, 3, 4]
    assert [r["lr"] for r in full.history] == pytest.approx([2e-3, 2e-3, 2e-4, 2e-4])
    log = (full.dir / "train.log").read_text()
    assert "phase 1/2: head" in log and "on cached features" in log and "phase 2/2: full" in log
    with pytest.raises(KeyboardInterrupt):
        train(tiny, name="killed", callbacks=[Kill(4)], **kw)
    resumed = train(tiny, name="killed", resume=True, **kw)
    assert_same_history(resumed.history, full.history)


def test_kill_after_a_phase_before_its_commit_resumes_from_the_restored_weights(tiny, tmp_path):
    """EarlyStopping restores the best weights in on_train_end; a kill right after must not leave a
    state that starts the next phase from the last epoch's weights instead."""

    class KillAtPhaseEnd(Callback):  # runs after EarlyStopping's restore (user callbacks come last)
        def on_train_end(self, trainer):
            if trainer.phase == 0:
                raise KeyboardInterrupt

    # lr 0.2 makes phase 1's val_loss rise after epoch 1, so the restore changes the weights
    kw = dict(model="cnn_bn", epochs=3, fine_tune=1, lr=0.2, optimizer="sgd", early_stopping=5,
              augment="none", schedule="constant", run_dir=tmp_path, **FAST)
    full = train(tiny, name="full", **kw)
    assert "restored the weights of epoch 1" in (full.dir / "train.log").read_text()
    with pytest.raises(KeyboardInterrupt):
        train(tiny, name="killed", callbacks=[KillAtPhaseEnd()], **kw)
    resumed = train(tiny, name="killed", resume=True, **kw)
    assert_same_history(resumed.history, full.history)


def _weights(run_dir, prefix=""):
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(run_dir / "last.safetensors")).items() if k.startswith(prefix)}


def test_feature_cache_matches_uncached_frozen_training(tiny, tmp_path):
    kw = dict(model="mobilenet_v1_025_tf", pretrained=False, freeze="frozen", augment="none", epochs=2,
              head=[32], dropout=0.0, lr=3e-3, run_dir=tmp_path, amp="none", **FAST)  # fp32 caching: exact parity
    cached = train(tiny, name="cached", feature_cache=True, **kw)
    plain = train(tiny, name="plain", feature_cache=False, **kw)
    assert "on cached features" in (cached.dir / "train.log").read_text()
    assert "on cached features" not in (plain.dir / "train.log").read_text()
    assert_same_history(cached.history, plain.history, tol=1e-5)
    a, b = _weights(cached.dir), _weights(plain.dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)


def test_unfreeze_from_boundary_cache_matches_uncached(tiny, tmp_path):
    from transferlab.models import create_model

    n_layers = len(create_model("mobilenet_v1_025_tf", 10, pretrained=False, input_size=32).layers())
    kw = dict(model="mobilenet_v1_025_tf", pretrained=False, unfreeze_from=n_layers - 12, augment="none",
              epochs=2, dropout=0.0, lr=1e-3, run_dir=tmp_path, amp="none", **FAST)
    cached = train(tiny, name="cached", feature_cache=True, **kw)
    plain = train(tiny, name="plain", feature_cache=False, **kw)
    assert "on cached features" in (cached.dir / "train.log").read_text()
    assert_same_history(cached.history, plain.history, tol=1e-5)
    a, b = _weights(cached.dir), _weights(plain.dir)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)


def test_feature_views_are_the_epochs_augmentations_and_cycle(tiny, tmp_path):
    """View v holds the augmentation the images get in epoch v without caching: with as many views as
    epochs, cached training is uncached training; with fewer, epochs cycle through the views."""
    from transferlab.training.features import FeatureViews

    kw = dict(model="cnn_bn", freeze="frozen", augment="light", epochs=2, lr=3e-3, amp="none", run_dir=tmp_path, **FAST)
    cached = train(tiny, name="views2", feature_views=2, **kw)
    plain = train(tiny, name="plain", feature_cache=False, **kw)
    one_view = train(tiny, name="views1", feature_views=1, **kw)
    assert "2 view(s)" in (cached.dir / "train.log").read_text()
    assert "1 view(s)" in (one_view.dir / "train.log").read_text()
    assert_same_history(cached.history, plain.history, tol=1e-5)
    # one view: epoch 2 sees epoch 1's augmentation again, so it is not the uncached epoch 2
    assert_same_history(one_view.history[:1], plain.history[:1], tol=1e-5)
    assert one_view.history[1]["train_loss"] != pytest.approx(plain.history[1]["train_loss"], abs=1e-5)

    # without augmentation the views would be identical: one pass, and the same training as without caching
    kw_none = {**kw, "augment": "none", "epochs": 3}
    no_aug = train(tiny, name="noaug", feature_views=4, **kw_none)
    assert "1 view(s)" in (no_aug.dir / "train.log").read_text()
    assert_same_history(no_aug.history, train(tiny, name="noaug-plain", feature_cache=False, **kw_none).history,
                        tol=1e-5)

    views = [torch.full((4, 2), float(v)) for v in range(3)]
    fv = FeatureViews(views, torch.arange(4))
    assert len(fv) == 4
    assert [float(fv[(e, 1)][0][0]) for e in range(1, 8)] == [0, 1, 2, 0, 1, 2, 0]
    batch = fv.__getitems__([(5, 3), (5, 0)])  # the DataLoader's batched fetch: epoch 5 reads view 2 (index 1)
    assert [(f.tolist(), int(y)) for f, y in batch] == [([1.0, 1.0], 3), ([1.0, 1.0], 0)]


def test_class_weights_auto_is_sklearn_balanced_and_changes_training(splits, tmp_path):
    from sklearn.utils.class_weight import compute_class_weight
    import numpy as np

    labels = [0] * 10 + [1] * 30 + [2] * 60
    w = class_weight_tensor("auto", labels, 3)
    assert np.allclose(w.numpy(), compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels)))
    assert class_weight_tensor([1, 2, 3], labels, 3).tolist() == [1, 2, 3]
    with pytest.raises(ConfigError, match="3 classes"):
        class_weight_tensor([1, 2], labels, 3)

    # an imbalanced version of the digits: classes 0-4 keep 4 training images each
    import dataclasses

    seen: dict[int, int] = {}
    train_samples = []
    for p, y in splits.train:
        seen[y] = seen.get(y, 0) + 1
        if y >= 5 or seen[y] <= 4:
            train_samples.append((p, y))
    imbalanced = dataclasses.replace(splits, train=train_samples)
    kw = dict(model="cnn_base", epochs=1, run_dir=tmp_path, **FAST)
    weighted = train(imbalanced, name="weighted", class_weights="auto", **kw)
    plain = train(imbalanced, name="plain", **kw)
    assert weighted.config["class_weights"] == "auto"
    assert weighted.history[0]["train_loss"] != pytest.approx(plain.history[0]["train_loss"], abs=1e-6)
    assert weighted.history[0]["val_loss"] != pytest.approx(plain.history[0]["val_loss"], abs=1e-6)


def test_optimizer_schedule_options_and_early_stopping_restore(tiny, tmp_path):
    run = train(tiny, model="cnn_base", epochs=4, optimizer="sgd", momentum=0.9, nesterov=True, lr=0.1,
                schedule="step", step_size=2, gamma=0.5, warmup=1, label_smoothing=0.1, run_dir=tmp_path, **FAST)
    assert [r["lr"] for r in run.history] == pytest.approx([0.01, 0.1, 0.1, 0.05])
    # patience 0 stops at the first epoch without improvement; the best epoch's weights are restored
    es = train(tiny, model="cnn_base", epochs=6, lr=0.5, optimizer="sgd", early_stopping=0, monitor="val_acc",
               name="es", run_dir=tmp_path, **FAST)
    accs = [r["val_acc"] for r in es.history]
    stopped, best = len(accs), len(accs) - 1
    assert stopped < 6 and all(a < b for a, b in zip(accs[:-1], accs[1:-1])) and accs[-1] <= accs[-2]
    assert es.best["epoch"] == best and read_meta(es.dir)["epoch"] == best
    log = (es.dir / "train.log").read_text()
    assert f"early stopping: val_acc did not improve for 0 epochs (best {accs[best - 1]:.4f} at epoch {best})" in log
    assert f"restored the weights of epoch {best}" in log
    # the model the run ends with (its committed state) is the best epoch's, not the stopped epoch's
    from safetensors.torch import load_file

    from transferlab import runfolder

    final = runfolder.load_state(es.dir)["model"]
    best_w, last_w = load_file(str(es.dir / "best.safetensors")), load_file(str(es.dir / "last.safetensors"))
    assert read_meta(es.dir, "last")["epoch"] == stopped
    keys = [k for k in final if k in best_w]
    assert keys and all(torch.equal(final[k], best_w[k]) for k in keys)
    assert not all(torch.equal(final[k], last_w[k]) for k in keys)


def test_unknown_option_and_bad_values(tiny, tmp_path):
    with pytest.raises(ConfigError, match="unknown training option"):
        train(tiny, model="cnn_base", epoch=3, run_dir=tmp_path)
    with pytest.raises(ConfigError, match="--batch-size"):
        train(tiny, model="cnn_base", batch_size=0, run_dir=tmp_path)
    with pytest.raises(ConfigError):
        train(tiny, model="no_such_recipe", run_dir=tmp_path)
    with pytest.raises(ConfigError, match="class"):
        train(tiny, model="cnn_base", class_weights=[1.0, 2.0], epochs=1, run_dir=tmp_path, **FAST)


def test_epoch_sampler_and_seeded_items_are_deterministic():
    from transferlab.training.sampling import EpochSampler, SeededItems

    s = EpochSampler(10, seed=1)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(2)
    e2 = list(s)
    assert sorted(i for _, i in e1) == list(range(10)) and {e for e, _ in e1} == {1}
    assert [i for _, i in e1] != [i for _, i in e2]
    s.set_epoch(1)
    assert list(s) == e1
    shards = [EpochSampler(10, seed=1, num_replicas=3, rank=r) for r in range(3)]
    got = [i for sh in shards for _, i in sh]
    assert len(got) == 12 and set(got) == set(range(10)) and all(len(sh) == 4 for sh in shards)

    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(())

    ds = SeededItems(Noise(), seed=5)
    before = torch.get_rng_state()
    assert ds[(1, 2)] == ds[(1, 2)] and ds[(1, 2)] != ds[(2, 2)]
    assert torch.equal(torch.get_rng_state(), before)  # the main RNG stream is untouched


def test_bf16_autocast_trains_and_caches_features(tiny, tmp_path):
    """--amp bf16 (opt-in) runs the loop and the frozen-feature extraction under autocast."""
    import math

    run = train(tiny, model="mobilenet_v1_025_tf", pretrained=False, freeze="frozen", epochs=1, amp="bf16",
                run_dir=tmp_path, **FAST)
    row = run.history[-1]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    assert "cached frozen-backbone features" in (run.dir / "train.log").read_text()
    assert Run.load(run.dir).config["amp"] == "bf16"


def test_auto_precision_caches_features_and_trains_in_fp32(monkeypatch):
    """--amp auto (the default): bf16 for the doctor's embeddings where the CPU has bf16 kernels, fp32
    for training steps and for the features a model trains on; none and bf16 mean what they say."""
    from transferlab import precision

    monkeypatch.setattr(precision, "bf16_is_native", lambda device="cpu": True)
    assert precision.inference_amp("auto") == "bf16" and precision.training_amp("auto") == "none"
    monkeypatch.setattr(precision, "bf16_is_native", lambda device="cpu": False)
    assert precision.inference_amp("auto") == "none"
    assert precision.inference_amp("bf16") == precision.training_amp("bf16") == "bf16"
    assert precision.inference_amp("none") == precision.training_amp("none") == "none"
    with pytest.raises(ConfigError, match="--amp"):
        precision.check_amp("fp8")
    lower = torch.nn.Conv2d(3, 4, 3)
    seen = []
    lower.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    from transferlab.training.features import extract

    monkeypatch.setattr(precision, "bf16_is_native", lambda device="cpu": True)
    batch = [(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))]
    feats, _ = extract(lower, batch, device=torch.device("cpu"), amp="auto", progress=False)
    assert seen == [torch.float32]  # the features a model trains on are those it computes when deployed
    feats, _ = extract(lower, batch, device=torch.device("cpu"), amp="bf16", progress=False)
    assert seen[-1] == torch.bfloat16 and feats.dtype == torch.float32  # asked for: computed in bf16, stored in fp32


def test_cached_features_live_on_disk_during_the_phase_and_are_removed_after(tiny, tmp_path, monkeypatch):
    """Features go to row files under $TRANSFERLAB_CACHE/train-features while a phase runs (never all
    in memory) and are gone when it ends; with no room for them, training says so and uses images."""
    from transferlab.training import features

    seen = []
    real = features.cache_features

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        if out is not None:
            train_views, val_feats, store = out
            seen.append((store.path, sorted(p.name for p in store.path.iterdir()), type(train_views.views[0])))
        return out

    monkeypatch.setattr(features, "cache_features", spy)
    run = train(tiny, model="cnn_base", freeze="frozen", epochs=2, run_dir=tmp_path / "a", **FAST)
    (folder, files, kind), = seen
    assert files == ["train-1.npy", "val.npy"] and kind.__name__ == "RowFile"
    assert not folder.exists()  # removed with the phase
    assert "MiB on disk" in (run.dir / "train.log").read_text()
    monkeypatch.setenv("TRANSFERLAB_FEATURE_CACHE_GB", "0.000001")  # 1 kB: no room
    small = train(tiny, model="cnn_base", freeze="frozen", epochs=2, run_dir=tmp_path / "b", **FAST)
    log = (small.dir / "train.log").read_text()
    assert "training on images instead" in log and "on cached features" not in log
    for got, want in zip(small.history, run.history):  # the same training, from images
        assert got["val_loss"] == pytest.approx(want["val_loss"], abs=1e-4)


def test_train_records_the_split_it_was_given(digits_dir, tmp_path):
    """A DataSplits drawn by the caller (val ratio 0.1) is recorded as drawn, so evaluate rebuilds the same
    validation images (it used to record the option's 0.2 and rebuild another split)."""
    splits = load_data(digits_dir, val_ratio=0.1, seed=3, progress=False)
    run = transferlab.train(splits, model="cnn_base", epochs=1, input_size=32, run_dir=str(tmp_path), progress=False)
    config = runfolder.read_config(run.dir)
    assert config["val_ratio"] == 0.1 and config["split_seed"] == 3 and config["seed"] == 0
    rebuilt, _, _ = runfolder.load_run_splits(run.dir)
    assert sorted(rebuilt.val) == sorted(splits.val)
