"""Issue 13, "small data, small surprises": defaults adapt to a tiny training set (batch size, epochs),
what was adapted is said and recorded, and a validation split too small to trust is warned about
with the 95% Wilson interval of an accuracy at that size."""
from __future__ import annotations

import json
import shutil

import pytest

from transferlab import _stats
from transferlab.training import train
from transferlab.training.adapt import MIN_BATCH, MIN_PHASE_STEPS, adapt_to_data, validation_note
from transferlab.training.config import TrainConfig


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


def adapted(n_train, world_size=1, recipe=None, **given):
    g = TrainConfig(model="cnn_bn", **given)
    return adapt_to_data(g.resolve(recipe if recipe is not None else {"epochs": 10}), g, n_train, world_size)


def test_tiny_training_set_gets_a_smaller_batch_and_more_epochs():
    cfg, notes = adapted(18)
    assert cfg.batch_size == MIN_BATCH == 8  # 3 steps an epoch instead of 1
    assert cfg.epochs * 3 >= MIN_PHASE_STEPS and cfg.epochs == 67
    assert len(notes) == 2 and notes[0].startswith("batch size 8 (not 32)") and notes[1].startswith("epochs 67 (not 10)")
    cfg, _ = adapted(100)  # 100 images: batch 16 gives 7 steps an epoch
    assert cfg.batch_size == 16 and cfg.epochs == 29


def test_what_the_user_set_is_never_changed():
    cfg, notes = adapted(18, batch_size=32, epochs=10)
    assert (cfg.batch_size, cfg.epochs, notes) == (32, 10, [])
    cfg, notes = adapted(18, batch_size=4)  # the user's batch; epochs still the default: raised
    assert cfg.batch_size == 4 and cfg.epochs == 40 and len(notes) == 1
    cfg, notes = adapted(18, epochs=3)
    assert cfg.batch_size == 8 and cfg.epochs == 3


def test_ordinary_datasets_are_left_alone():
    for n in (128, 240, 2000):
        cfg, notes = adapted(n)
        assert (cfg.batch_size, cfg.epochs, notes) == (32, 10, [])
    cfg, notes = adapted(200, world_size=2)  # 100 per process: tiny for each of them
    assert cfg.batch_size == 16


def test_fine_tune_phase_from_the_recipe_gets_enough_steps_too():
    recipe = {"epochs": 1, "fine_tune": 6, "freeze": "frozen"}
    cfg, notes = adapted(18, recipe=recipe)
    assert cfg.epochs == 67 and cfg.fine_tune == 67 and len(notes) == 3
    cfg, _ = adapted(18, recipe=recipe, fine_tune=2)
    assert cfg.fine_tune == 2


def test_validation_note_gives_the_wilson_interval():
    lo, hi = _stats.wilson_interval(0.9, 6)
    note = validation_note(6)
    assert note.startswith("validation has only 6 images") and f"{lo:.2f}-{hi:.2f}" in note
    assert "95% Wilson interval" in note and "0.17" in note  # one image is a sixth of val_acc
    assert validation_note(40) is None and validation_note(1000) is None
    assert "no images" in validation_note(0)


def test_doctor_and_train_share_one_wilson_interval():
    from transferlab.doctor import checks
    from transferlab import doctor

    assert checks.wilson_interval is _stats.wilson_interval is doctor.wilson_interval


@pytest.fixture(scope="module")
def eighteen(tmp_path_factory):
    """The issue's shape: 3 classes x 8 images -> 18 training and 6 validation images (digits, 32 px)."""
    from transferlab.data.sample import write_digits

    root = write_digits(tmp_path_factory.mktemp("d18") / "digits", per_class=8, size=32)
    for d in [d for d in sorted(root.iterdir()) if d.is_dir()][3:]:
        shutil.rmtree(d)
    return root


def test_train_adapts_says_so_and_records_it(eighteen, tmp_path, capsys):
    run = train(eighteen, model="mobilenet_v1_025_tf", pretrained=False, freeze="frozen", input_size=32,
                run_dir=tmp_path, progress=False)
    out = capsys.readouterr().out
    assert "adapted to the data: batch size 8 (not 32)" in out and "adapted to the data: epochs 67 (not 10)" in out
    assert "warning: validation has only 6 images" in out and "95% Wilson interval" in out
    cfg = json.loads((run.dir / "config.json").read_text())
    assert cfg["batch_size"] == 8 and cfg["epochs"] == 67 and len(run.history) == 67
    assert len(cfg["adapted"]) == 2 and any("validation has only 6 images" in w for w in cfg["warnings"])
    log = (run.dir / "train.log").read_text()
    assert "adapted to the data" in log and "validation has only 6 images" in log


def test_the_issues_case_learns_with_the_defaults(shared_dir, tmp_path):
    """18 flower photos, mobilenet_v1_025_tf with the real weights, every default: the old defaults
    (batch 32, 10 epochs = 10 optimizer steps) leave the new head near chance on held-out photos."""
    from transferlab.evaluation import evaluate

    flowers = shared_dir / "data" / "flowers"
    if not flowers.is_dir():
        pytest.skip("../shared/data/flowers is not present")
    data, held = tmp_path / "tiny18", tmp_path / "held"
    for c in ("daisy", "dandelion", "rose"):
        files = sorted((flowers / c).iterdir())
        for sub, chosen in ((data, files[:8]), (held, files[100:140])):
            (sub / c).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, sub / c / f.name)
    kw = dict(model="mobilenet_v1_025_tf", weights=str(shared_dir / "weights"), run_dir=tmp_path / "runs",
              progress=False)
    new = train(data, name="defaults", **kw)
    old = train(data, name="old", batch_size=32, epochs=10, **kw)
    acc = {r.dir.name: evaluate(r.dir, data=held, split="all", plots=False, progress=False)["accuracy"]
           for r in (new, old)}
    assert new.config["batch_size"] == 8 and new.config["epochs"] > 10
    # measured: 0.59 with the adapted defaults, 0.34 (chance) with the old ones, on 120 held-out photos
    assert acc["defaults"] >= 0.5 and acc["defaults"] >= acc["old"] + 0.1, acc
