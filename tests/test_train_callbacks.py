"""Callbacks, schedules and config: unit tests on scripted metric sequences (no data, no real model)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from transferlab.errors import ConfigError
from transferlab.training import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, TrainConfig
from transferlab.training.config import RESOLVED, ResolvedConfig
from transferlab.training.schedule import build_optimizer, build_scheduler


class FakeTrainer:
    """What callbacks see of the Trainer: model, optimizer, phase, epoch, log, save_checkpoint."""

    def __init__(self, lr=0.1):
        self.model = nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.phase = 0
        self.epoch = 0
        self.messages: list[str] = []
        self.saved: list[tuple[str, int]] = []
        self.saved_to: list[tuple[object, dict]] = []  # (path, logs) of each save
        self.is_main = True

    def log(self, msg):
        self.messages.append(msg)

    def save_checkpoint(self, path, epoch, logs):
        self.saved.append((path.name, epoch))
        self.saved_to.append((path, logs))


def drive(cb, values, monitor="val_loss", trainer=None, on_epoch=None):
    """Feed ``values`` as the monitored metric of epochs 1.., until the callback stops training."""
    t = trainer or FakeTrainer()
    cb.on_train_begin(t)
    stopped = None
    for epoch, v in enumerate(values, 1):
        t.epoch = epoch
        if on_epoch:
            on_epoch(t, epoch)
        cb.on_epoch_end(t, epoch, {"epoch": epoch, monitor: v})
        if cb.stop_training:
            stopped = epoch
            break
    cb.on_train_end(t)
    return t, stopped


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    es = EarlyStopping(patience=2)
    _, stopped = drive(es, [1.0, 0.8, 0.9, 0.85, 0.7])
    assert stopped == 4 and es.best == 0.8 and es.best_epoch == 2


def test_early_stopping_mode_max_and_min_delta():
    es = EarlyStopping(monitor="val_acc", patience=2, min_delta=0.05)
    _, stopped = drive(es, [0.5, 0.52, 0.54, 0.7], monitor="val_acc")  # +0.02, +0.04 are not improvements
    assert stopped == 3 and es.best == 0.5


def test_early_stopping_min_delta_on_the_default_falling_monitor():
    """val_loss (the default monitor) goes down: only a fall by more than min_delta improves, a rise never does."""
    es = EarlyStopping(patience=2, min_delta=0.05)
    assert es.monitor == "val_loss"
    _, stopped = drive(es, [1.0, 0.97, 1.02, 0.5])  # -0.03 is too small, +0.02 is worse
    assert stopped == 3 and es.best == 1.0 and es.best_epoch == 1 and es.wait == 2
    es = EarlyStopping(patience=1, min_delta=0.05)
    _, stopped = drive(es, [1.0, 0.94, 0.90])  # -0.06 improves, then -0.04 does not
    assert stopped == 3 and es.best == 0.94 and es.best_epoch == 2


@pytest.mark.parametrize("monitor, values", [("val_loss", [1.0, 0.75]), ("val_acc", [0.5, 0.75])])
def test_a_change_of_exactly_min_delta_is_not_an_improvement(monitor, values):
    es = EarlyStopping(monitor=monitor, patience=1, min_delta=0.25)  # binary-exact values: no rounding
    _, stopped = drive(es, values, monitor=monitor)
    assert stopped == 2 and es.best == values[0]
    es = EarlyStopping(monitor=monitor, patience=1, min_delta=-0.25)  # the sign of min_delta is ignored
    _, stopped = drive(es, values, monitor=monitor)
    assert stopped == 2 and es.best == values[0]
    es = EarlyStopping(monitor=monitor, patience=1)  # min_delta 0: the same change is an improvement
    _, stopped = drive(es, values, monitor=monitor)
    assert stopped is None and es.best == values[1] and es.best_epoch == 2


@pytest.mark.parametrize("monitor, mode", [("val_loss", "min"), ("loss", "min"), ("val_acc", "max"),
                                           ("acc", "max"), ("fmeasure_macro", "max")])
def test_auto_mode_follows_the_metric_name(monitor, mode):
    es = EarlyStopping(monitor=monitor, patience=1)
    t, _ = drive(es, [0.5], monitor=monitor)
    assert es._m.mode == mode and es.best == 0.5
    better, worse = (0.4, 0.6) if mode == "min" else (0.6, 0.4)
    es.on_epoch_end(t, 2, {monitor: worse})
    assert es.stop_training
    es = EarlyStopping(monitor=monitor, patience=1)
    _, stopped = drive(es, [0.5, better], monitor=monitor)
    assert stopped is None and es.best == better
    assert EarlyStopping(monitor=monitor, mode="max")._m.mode == "max"  # an explicit mode wins
    assert EarlyStopping(monitor=monitor, mode="min")._m.mode == "min"


def test_early_stopping_patience_zero_and_nan():
    es = EarlyStopping(patience=0)
    _, stopped = drive(es, [1.0, 1.0])
    assert stopped == 2
    es = EarlyStopping(patience=1)
    _, stopped = drive(es, [1.0, math.nan])
    assert stopped == 2


def test_early_stopping_restores_best_weights():
    def set_weight(t, epoch):
        with torch.no_grad():
            t.model.weight.fill_(float(epoch))

    es = EarlyStopping(patience=2, restore_best_weights=True)
    t, stopped = drive(es, [1.0, 0.5, 0.6, 0.7], on_epoch=set_weight)
    assert stopped == 4
    assert torch.all(t.model.weight == 2.0)  # the weights of epoch 2
    assert any("restored" in m for m in t.messages)


def test_early_stopping_state_round_trip_and_new_phase_resets():
    es = EarlyStopping(patience=3)
    t, _ = drive(es, [1.0, 0.9, 0.95])
    state = es.state_dict()
    es2 = EarlyStopping(patience=3)
    es2.load_state_dict(state)
    es2.on_train_begin(t)  # same phase: a resume keeps the state
    assert es2.wait == 1 and es2.best == 0.9
    es2.on_epoch_end(t, 4, {"val_loss": 0.96})
    es2.on_epoch_end(t, 5, {"val_loss": 0.97})
    assert es2.stop_training
    t.phase = 1  # fine-tuning phase: starts afresh
    es2.on_train_begin(t)
    assert not es2.stop_training and es2.wait == 0 and es2.best == math.inf


def test_model_checkpoint_saves_last_every_epoch_and_best_on_improvement(tmp_path):
    mc = ModelCheckpoint(tmp_path, monitor="val_acc")
    t, _ = drive(mc, [0.5, 0.7, 0.6, 0.8], monitor="val_acc")
    best = [e for name, e in t.saved if name == "best.safetensors"]
    last = [e for name, e in t.saved if name == "last.safetensors"]
    assert best == [1, 2, 4] and last == [1, 2, 3, 4]
    mc2 = ModelCheckpoint(tmp_path, monitor="val_acc")
    mc2.load_state_dict(mc.state_dict())
    assert mc2.best == 0.8 and mc2.best_epoch == 4


def test_model_checkpoint_min_delta_on_val_loss_saves_only_real_improvements(tmp_path):
    mc = ModelCheckpoint(tmp_path, min_delta=0.05)  # the default monitor, val_loss, goes down
    t, _ = drive(mc, [1.0, 0.97, 1.02, 0.9, 0.86])
    assert [e for name, e in t.saved if name == "best.safetensors"] == [1, 4]
    assert mc.best == 0.9 and mc.best_epoch == 4
    assert [e for name, e in t.saved if name == "last.safetensors"] == [1, 2, 3, 4, 5]
    assert all(p == "best.safetensors" or p == "last.safetensors" for p, _ in t.saved)


def test_model_checkpoint_flags_and_best_across_phases(tmp_path):
    mc = ModelCheckpoint(tmp_path, save_last=False)
    t, _ = drive(mc, [1.0, 0.5, 0.7])
    assert t.saved == [("best.safetensors", 1), ("best.safetensors", 2)]
    t.phase = 1  # a fine-tuning phase keeps the best of the first one
    mc.on_train_begin(t)
    mc.on_epoch_end(t, 4, {"val_loss": 0.6})
    assert t.saved[-1] == ("best.safetensors", 2) and mc.best == 0.5
    mc = ModelCheckpoint(tmp_path, save_best=False)
    t, _ = drive(mc, [1.0, 0.5])
    assert t.saved == [("last.safetensors", 1), ("last.safetensors", 2)] and mc.best == 0.5


def test_reduce_lr_on_plateau_reduces_at_the_right_epochs_and_resumes():
    rl = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.02, min_delta=0.0)
    t = FakeTrainer(lr=0.1)
    rl.on_train_begin(t)
    lrs = []
    values = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99]
    for epoch, v in enumerate(values[:4], 1):
        rl.on_epoch_end(t, epoch, {"val_loss": v})
        lrs.append(t.optimizer.param_groups[0]["lr"])
    assert lrs == [0.1, 0.1, 0.1, 0.05]  # epochs 3 and 4 stalled (patience 2) -> reduce after epoch 4
    # resume into a fresh trainer/optimizer: the plateau counter and lr floor continue
    state = rl.state_dict()
    t2 = FakeTrainer(lr=0.05)
    rl2 = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.02, min_delta=0.0)
    rl2.load_state_dict(state)
    rl2.on_train_begin(t2)
    for epoch, v in enumerate(values[4:], 5):
        rl2.on_epoch_end(t2, epoch, {"val_loss": v})
        lrs.append(t2.optimizer.param_groups[0]["lr"])
    assert lrs[4:] == [0.05, 0.025, 0.025]  # 5 and 6 stalled -> reduce after epoch 6


def test_callbacks_reject_bad_values_and_missing_metric():
    with pytest.raises(ConfigError):
        ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ConfigError):
        ReduceLROnPlateau(patience=0)
    with pytest.raises(ConfigError):
        EarlyStopping(patience=-1)
    with pytest.raises(ConfigError):
        EarlyStopping(mode="sideways")
    es = EarlyStopping(monitor="val_f1")
    with pytest.raises(ConfigError, match="val_f1"):
        drive(es, [1.0])


def _lrs(name, epochs, **kw):
    net = nn.Linear(2, 2)
    opt = build_optimizer(net, "sgd", 1.0)
    sched = build_scheduler(opt, name, epochs, **kw)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedules_constant_cosine_step_and_warmup():
    assert _lrs("constant", 3) == [1.0, 1.0, 1.0]
    cos = _lrs("cosine", 4)
    assert cos[0] == 1.0 and all(a > b for a, b in zip(cos, cos[1:])) and cos[-1] > 0
    assert _lrs("step", 6, step_size=2, gamma=0.1) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    warm = _lrs("cosine", 6, warmup=2, warmup_factor=0.1)
    assert warm[0] == pytest.approx(0.1) and warm[1] == pytest.approx(0.55) and warm[2] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(warm[2:], warm[3:]))


def test_optimizers_and_weight_decay_groups():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = build_optimizer(net, "adamw", 1e-3, weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 0.05]
    sgd = build_optimizer(net, "sgd", 0.1, momentum=0.9, nesterov=True)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.9
    assert isinstance(build_optimizer(net, "adam", 1e-3), torch.optim.Adam)
    for p in net.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable"):
        build_optimizer(net, "adam", 1e-3)


@pytest.mark.parametrize("kw, match", [
    ({"epochs": 0}, "--epochs"), ({"lr": -1.0}, "--lr"), ({"optimizer": "rmsprop"}, "--optimizer"),
    ({"schedule": "poly"}, "--schedule"), ({"augment": "extreme"}, "--augment"), ({"freeze": "half"}, "--freeze"),
    ({"label_smoothing": 1.0}, "--label-smoothing"), ({"monitor": "val_f1"}, "--monitor"),
    ({"amp": "fp8"}, "--amp"), ({"unfreeze_from": 3, "unfreeze_last": 2}, "not both"),
    ({"fine_tune": 2, "freeze": "full"}, "--fine-tune"), ({"head": "256,x"}, "--head"),
    ({"resume": True, "overwrite": True}, "not both"), ({"name": "a/b"}, "--name"),
])
def test_config_rejects_bad_values_with_one_line(kw, match):
    with pytest.raises(ConfigError, match=match) as info:
        TrainConfig(**kw).validate()
    assert "\n" not in str(info.value)


def test_config_resolves_recipe_defaults_unless_overridden():
    defaults = {"lr": 0.01, "augment": "light", "weight_decay": 1e-4, "freeze": "frozen", "fine_tune_lr": 1e-4}
    cfg = TrainConfig(model="mobilenet_v2").resolve(defaults)
    assert (cfg.lr, cfg.augment, cfg.weight_decay, cfg.freeze, cfg.optimizer) == (0.01, "light", 1e-4, "frozen", "adam")
    assert cfg.name == "mobilenet_v2" and cfg.feature_views == 4
    cfg = TrainConfig(model="x", lr=0.5, augment="none", weight_decay=0.0, freeze="full").resolve(defaults)
    assert (cfg.lr, cfg.augment, cfg.weight_decay, cfg.freeze, cfg.feature_views) == (0.5, "none", 0.0, "full", 1)
    cfg = TrainConfig(model="x", fine_tune=2).resolve(defaults)
    assert cfg.freeze == "frozen" and cfg.fine_tune_lr == 1e-4 and cfg.total_epochs == 12
    cfg = TrainConfig(model="x", fine_tune=2, lr=0.02).resolve(defaults)
    assert cfg.fine_tune_lr == pytest.approx(0.002)


def test_resolved_config_has_every_recipe_option_and_reads_back_from_its_dict():
    """What training reads (ResolvedConfig) sets every option the recipe fills; a config.json that lacks
    one (written by hand) is a one-line ConfigError when a run resumes from it, not a crash mid-training."""
    cfg = TrainConfig(model="cnn_bn").resolve({"epochs": 4})
    assert isinstance(cfg, ResolvedConfig) and all(getattr(cfg, k) is not None for k in RESOLVED)
    again = ResolvedConfig.from_dict({**cfg.to_dict(), "classes": ["a", "b"]})  # config.json's extra keys
    assert isinstance(again, ResolvedConfig) and again.to_dict() == cfg.to_dict()
    assert isinstance(dataclasses.replace(cfg, epochs=5), ResolvedConfig)
    with pytest.raises(ConfigError, match="lack epochs, warmup") as info:
        ResolvedConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k not in ("epochs", "warmup")})
    assert "\n" not in str(info.value)


def test_early_stopping_state_carries_the_best_weights_to_a_resumed_run():
    def set_weight(t, epoch):
        with torch.no_grad():
            t.model.weight.fill_(float(epoch))

    es = EarlyStopping(patience=5)
    t, _ = drive(es, [1.0, 0.5, 0.7], on_epoch=set_weight)  # ran out of epochs: best epoch 2 restored
    state = es.state_dict()
    assert set(state) == {"best", "best_epoch", "wait", "stopped_epoch", "stop_training", "phase", "best_weights"}
    assert torch.all(state["best_weights"]["weight"] == 2.0)
    resumed = EarlyStopping(patience=5)
    resumed.load_state_dict(state)
    t2 = FakeTrainer()
    t2.epoch = 3
    with torch.no_grad():
        t2.model.weight.fill_(3.0)
    resumed.on_train_begin(t2)
    resumed.on_train_end(t2)  # the run resumed after its last epoch: the best weights come back
    assert torch.all(t2.model.weight == 2.0) and t2.messages == ["restored the weights of epoch 2 (val_loss 0.5000)"]


def test_reduce_lr_logs_each_reduction_once():
    rl = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0)
    t, _ = drive(rl, [1.0, 1.0, 1.0, 0.5])
    assert t.messages == ["reduce lr on plateau: val_loss stalled for 2 epochs, lr 0.1 -> 0.05"]


def test_reduce_lr_follows_mode_threshold_cooldown_and_floor():
    def lrs(values, monitor="val_loss", lr=0.1, **kw):
        rl = ReduceLROnPlateau(monitor=monitor, **{"factor": 0.5, "patience": 1, **kw})
        t = FakeTrainer(lr=lr)
        rl.on_train_begin(t)
        out = []
        for epoch, v in enumerate(values, 1):
            rl.on_epoch_end(t, epoch, {monitor: v})
            out.append(t.optimizer.param_groups[0]["lr"])
        return out

    # val_acc goes up: rising is improving (auto mode max), a fall is a plateau
    assert lrs([0.5, 0.6, 0.7], monitor="val_acc") == [0.1, 0.1, 0.1]
    assert lrs([0.5, 0.4], monitor="val_acc") == [0.1, 0.05]
    # min_delta is absolute: from 0.5, 0.46 is not 0.05 better (a relative 5% would count 0.46 as better)
    assert lrs([0.5, 0.46], min_delta=0.05) == [0.1, 0.05]
    assert lrs([0.5, 0.44], min_delta=0.05) == [0.1, 0.1]
    # the default min_delta (1e-4, absolute): a change of 1e-5 is a plateau
    assert lrs([0.5, 0.49999]) == [0.1, 0.05]
    # cooldown: after a reduction, one epoch in which no reduction happens
    assert lrs([1.0, 1.0, 1.0, 1.0], cooldown=1) == [0.1, 0.05, 0.05, 0.025]
    assert lrs([1.0, 1.0, 1.0, 1.0]) == [0.1, 0.05, 0.025, 0.0125]
    # the floor
    assert lrs([1.0, 1.0, 1.0], min_lr=0.06) == [0.1, 0.06, 0.06]


def test_reduce_lr_state_without_a_scheduler_and_a_new_phase():
    rl = ReduceLROnPlateau(patience=2)
    assert rl.state_dict() == {"phase": None, "scheduler": None}  # before training began
    rl.load_state_dict({"phase": 0, "scheduler": None})  # nothing to restore
    t = FakeTrainer(lr=0.1)
    rl.on_train_begin(t)
    assert rl.scheduler.optimizer is t.optimizer and rl.scheduler.num_bad_epochs == 0
    rl.on_epoch_end(t, 1, {"val_loss": 1.0})
    rl.on_epoch_end(t, 2, {"val_loss": 1.0})
    assert rl.scheduler.num_bad_epochs == 1
    t.phase = 1  # a fine-tuning phase starts afresh
    rl.on_train_begin(t)
    assert rl.scheduler.num_bad_epochs == 0 and rl.state_dict()["phase"] == 1
    saved = rl.state_dict()
    rl.on_epoch_end(t, 3, {"val_loss": 0.5})
    assert saved["scheduler"]["best"] == float("inf")  # a snapshot, not the live scheduler state


def test_callback_defaults_and_fresh_state():
    es = EarlyStopping()
    assert (es.monitor, es.patience, es.min_delta, es.restore_best_weights) == ("val_loss", 5, 0.0, True)
    assert es.stopped_epoch is None and es.best_weights is None and es.stop_training is False
    assert es.best == math.inf and es.best_epoch is None and es.wait == 0
    rl = ReduceLROnPlateau()
    assert (rl.monitor, rl.factor, rl.patience, rl.min_lr, rl.min_delta, rl.cooldown) == ("val_loss", 0.1, 3, 0.0, 1e-4, 0)
    mc = ModelCheckpoint("runs/x", monitor="val_acc")
    assert mc.monitor == "val_acc" and mc.best == -math.inf and mc.best_epoch is None
    assert ReduceLROnPlateau(patience=1).patience == 1 and ReduceLROnPlateau(factor=0.99).factor == 0.99


def test_early_stopping_records_the_stopped_epoch_and_restores_only_when_it_should():
    def set_weight(t, epoch):
        with torch.no_grad():
            t.model.weight.fill_(float(epoch))

    es = EarlyStopping(patience=2)
    drive(es, [1.0, 0.5, 0.6, 0.7], on_epoch=set_weight)
    assert es.stopped_epoch == 4 and es.stop_training is True
    # restore turned off: the last epoch's weights stay
    es = EarlyStopping(patience=2, restore_best_weights=False)
    t, _ = drive(es, [1.0, 0.5, 0.6, 0.7], on_epoch=set_weight)
    assert torch.all(t.model.weight == 4.0) and es.best_weights is None and t.messages[-1].startswith("early stopping")
    # the best epoch is the last one: nothing to restore, nothing said
    es = EarlyStopping(patience=2)
    t, _ = drive(es, [1.0, 0.5], on_epoch=set_weight)
    assert torch.all(t.model.weight == 2.0) and t.messages == []
    # no epoch ever improved (NaN losses): no best weights to restore
    es = EarlyStopping(patience=1)
    t, stopped = drive(es, [math.nan, math.nan], on_epoch=set_weight)
    assert stopped == 1 and es.best_weights is None and not any("restored" in m for m in t.messages)


def test_model_checkpoint_writes_into_its_folder_with_the_epoch_logs(tmp_path):
    from pathlib import Path

    mc = ModelCheckpoint(tmp_path / "run")
    t = FakeTrainer()
    mc.on_epoch_end(t, 1, {"epoch": 1, "val_loss": 0.5})
    assert t.saved_to == [(Path(tmp_path / "run" / "last.safetensors"), {"epoch": 1, "val_loss": 0.5}),
                          (Path(tmp_path / "run" / "best.safetensors"), {"epoch": 1, "val_loss": 0.5})]


def test_bad_values_and_missing_metrics_are_explained():
    with pytest.raises(ConfigError) as info:
        EarlyStopping(mode="sideways")
    assert str(info.value) == "mode must be auto, min or max, got 'sideways'"
    with pytest.raises(ConfigError) as info:
        EarlyStopping(patience=-1)
    assert str(info.value) == "early-stopping patience must be >= 0, got -1"
    for factor in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError) as info:
            ReduceLROnPlateau(factor=factor)
        assert str(info.value) == f"reduce-lr factor must be between 0 and 1, got {factor}"
    with pytest.raises(ConfigError) as info:
        ReduceLROnPlateau(patience=0)
    assert str(info.value) == "reduce-lr patience must be at least 1, got 0"
    with pytest.raises(ConfigError) as info:
        drive(EarlyStopping(monitor="val_f1"), [1.0])
    assert str(info.value) == "monitored metric 'val_f1' is not in the logs (epoch, val_loss)"


def test_callback_state_is_saved_under_its_key_and_batch_hooks_run(tmp_path):
    """Lightning-style: states keyed by ``state_key`` (not list position), batch hooks per step."""
    from transferlab.training.state import callback_states, load_callback_states
    from transferlab.training.callbacks import Callback, EarlyStopping, ReduceLROnPlateau

    class Steps(Callback):
        def __init__(self):
            self.begun, self.ended = [], []

        def on_train_batch_begin(self, trainer, step):
            self.begun.append(step)

        def on_train_batch_end(self, trainer, step, logs):
            self.ended.append((step, logs["images"], round(logs["loss"], 6) >= 0))

        def state_dict(self):
            return {"steps": len(self.ended)}

        def load_state_dict(self, state):
            self.restored = state["steps"]

    es, rl = EarlyStopping(monitor="val_acc", patience=3), ReduceLROnPlateau(monitor="val_loss")
    es._m.best, es.wait = 0.75, 2
    saved = callback_states([es, rl, Steps(), Steps()])
    assert set(saved) == {"EarlyStopping[val_acc]", "ReduceLROnPlateau[val_loss]", "Steps", "Steps#2"}
    fresh_es = EarlyStopping(monitor="val_acc", patience=3)
    load_callback_states([ReduceLROnPlateau(monitor="val_loss"), fresh_es], saved)  # another order
    assert fresh_es.best == 0.75 and fresh_es.wait == 2
    # a state of version 1 (a list by position) still loads
    older = EarlyStopping(monitor="val_acc", patience=3)
    load_callback_states([older], [saved["EarlyStopping[val_acc]"]])
    assert older.best == 0.75

    import torch
    from torch import nn

    from transferlab.training.loop import Runtime, Trainer

    net = nn.Linear(2, 2)
    steps = Steps()
    x, y = torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    Trainer(net, net, [(x[:4], y[:4]), (x[4:], y[4:])], [], optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
            callbacks=[steps], runtime=Runtime(progress=False, verbose=False)).train_one_epoch(1)
    assert steps.begun == [1, 2] and [(s, n) for s, n, _ in steps.ended] == [(1, 4), (2, 2)]
