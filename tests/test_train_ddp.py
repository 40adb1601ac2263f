"""DistributedDataParallel on CPU with gloo: ``torchrun --nproc_per_node 2`` and two "nodes" of one process
meeting through c10d rendezvous on localhost, each rank on its own shard of the data; checked against
a single-process run, resumed after a kill, and the metric reduction over ranks in-process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from transferlab.checkpoint import read_meta
from transferlab.training import Run, train
from transferlab.training.distributed import DistInfo, all_reduce_sum, env_rank, env_world_size, setup
from transferlab.training.loop import Runtime, Trainer


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_nodes(args: list[str], env: dict, log_dir: Path) -> list[subprocess.Popen]:
    """Two torchrun "nodes" of one process each on localhost, meeting through c10d rendezvous."""
    port, rid = _free_port(), f"t{os.getpid()}"
    return [subprocess.Popen([*_torchrun(), "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                              "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", rid, "-m", "transferlab", *args],
                             stdout=open(log_dir / f"node{n}.log", "w"), stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
            for n in range(2)]


def test_torchrun_ranks_cache_and_train_on_their_shard_alone(digits_dir, tmp_path, monkeypatch):
    """1 node x 2 processes (gloo): each rank decodes and caches only its half of the images (two image
    caches of 120 train and two of 30 val images, none of all 240) and its features; one run folder."""
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERLAB_CACHE": str(cache)}
    runs = tmp_path / "runs"
    cmd = [*_torchrun(), "--nproc_per_node", "2", "--standalone", "-m", "transferlab", "train", str(digits_dir),
           "--model", "cnn_base", "--freeze", "frozen", "--epochs", "2", "--fine-tune", "1", "--lr", "3e-3",
           "--input-size", "32", "--batch-size", "16", "--run-dir", str(runs), "--name", "ddp", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["ddp"]  # exactly one run folder
    run = runs / "ddp"
    assert sorted(p.name for p in run.glob("*.safetensors")) == ["best.safetensors", "last.safetensors"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["batch_size"] == 16 and cfg["split_counts"]["train"] == 240
    assert proc.stdout.count("epoch 3/3") == 1  # rank 0 alone prints
    assert "120 train + 30 val images (this rank's shard of 2)" in proc.stdout
    arrays = sorted(int(p.name.split("-")[1].split("x")[0]) for p in (cache / "images").glob("*.npy"))
    assert arrays == [30, 30, 120, 120]
    assert not list((cache / "train-features").glob("phase-*"))  # the feature files are gone after the phases
    assert read_meta(run, "last")["epoch"] == 3
    assert [r["epoch"] for r in Run.load(run).history] == [1, 2, 3]


def test_two_nodes_reach_the_single_process_accuracy_and_resume(digits_dir, tmp_path, monkeypatch):
    """2 "nodes" x 1 process on localhost (c10d rendezvous): the sharded run learns as well as one
    process; stopped mid-run, the same command with --resume finishes it from the last epoch saved."""
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERLAB_CACHE": str(tmp_path / "cache")}
    runs = tmp_path / "runs"
    args = ["train", str(digits_dir), "--model", "cnn_base", "--epochs", "8", "--lr", "3e-3", "--input-size", "32",
            "--batch-size", "16", "--run-dir", str(runs), "--no-progress"]
    procs = _two_nodes([*args, "--name", "two"], env, tmp_path)
    assert [p.wait(timeout=240) for p in procs] == [0, 0], (tmp_path / "node0.log").read_text()[-3000:]
    two = Run.load(runs / "two").history
    single = train(digits_dir, model="cnn_base", epochs=8, lr=3e-3, input_size=32, batch_size=32,
                   run_dir=tmp_path / "single", progress=False).history
    assert len(two) == len(single) == 8
    assert single[-1]["val_acc"] >= 0.85 and abs(two[-1]["val_acc"] - single[-1]["val_acc"]) <= 0.1, (two, single)

    # interrupted after its first epochs, then resumed by the same two nodes
    procs = _two_nodes([*args, "--epochs", "40", "--name", "cut"], env, tmp_path)
    history = runs / "cut" / "history.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not history.exists() or len(history.read_text().splitlines()) < 3):
        time.sleep(0.05)
    for p in procs:  # as a scheduler stops a job (scancel, a pre-emption): torchrun passes it to its worker
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)
    done = len(history.read_text().splitlines()) - 1
    assert 2 <= done < 40
    procs = _two_nodes([*args, "--epochs", "40", "--name", "cut", "--resume"], env, tmp_path)
    assert [p.wait(timeout=240) for p in procs] == [0, 0], (tmp_path / "node0.log").read_text()[-3000:]
    log = (tmp_path / "node0.log").read_text() + (tmp_path / "node1.log").read_text()
    assert "resuming" in log
    assert [r["epoch"] for r in Run.load(runs / "cut").history] == list(range(1, 41))
    assert read_meta(runs / "cut", "last")["epoch"] == 40


class _OtherRank:
    """Stands in for torch.distributed.all_reduce with one other rank that contributed ``values``."""

    def __init__(self, values):
        self.values, self.calls = values, 0

    def __call__(self, tensor, op=None):
        assert op == torch.distributed.ReduceOp.SUM
        assert tensor.dtype == torch.float64  # counts and sums are summed exactly
        self.calls += 1
        tensor += torch.tensor(self.values, dtype=tensor.dtype)


def test_metrics_are_summed_over_ranks(monkeypatch):
    """Each rank trains and validates on its shard; the epoch's loss and accuracy are over all ranks' images."""
    other = _OtherRank([6.0, 3, 4])  # the other rank: loss sum 6.0, 3 correct of 4 images
    monkeypatch.setattr(torch.distributed, "all_reduce", other)
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 0])  # 3 of 4 right
    with torch.no_grad():
        loss_sum = float(nn.functional.cross_entropy(net(x), y, reduction="sum"))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: the weights stay, so both passes see the same logits
    trainer = Trainer(net, net, [(x[:2], y[:2]), (x[2:], y[2:])], [(x[:3], y[:3]), (x[3:], y[3:])], optimizer=opt,
                      runtime=Runtime(dist=DistInfo(world_size=2, rank=0), progress=False, verbose=False))
    val = trainer.evaluate()
    assert val == {"val_loss": pytest.approx((loss_sum + 6.0) / 8), "val_acc": pytest.approx(6 / 8)}
    logs = trainer.train_one_epoch(1)
    assert logs["train_loss"] == pytest.approx((loss_sum + 6.0) / 8) and logs["train_acc"] == pytest.approx(6 / 8)
    assert logs["images"] == 8 and other.calls == 2


def test_single_process_needs_no_process_group(monkeypatch):
    def no_all_reduce(*a, **k):
        raise AssertionError("all_reduce in a single process")

    monkeypatch.setattr(torch.distributed, "all_reduce", no_all_reduce)
    assert all_reduce_sum([1.5, 2.0], DistInfo(), torch.device("cpu")) == [1.5, 2.0]
    for var in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    assert (env_world_size(), env_rank()) == (1, 0)
    info = setup("cpu")
    assert info == DistInfo() and not info.enabled and info.is_main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert (env_world_size(), env_rank()) == (4, 3)
    info = DistInfo(world_size=4, rank=3)
    assert info.enabled and not info.is_main and DistInfo(world_size=4, rank=0).is_main


class _Recorder:
    def __init__(self, result=None):
        self.calls, self.result = [], result

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


@pytest.mark.parametrize("device, backend", [("cpu", "gloo"), ("cuda", "nccl")])
def test_setup_joins_the_process_group_from_the_launch_variables(monkeypatch, device, backend):
    import torch.distributed as dist

    monkeypatch.setenv("WORLD_SIZE", "2")  # the smallest group: two processes
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: None)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    assert setup(device).enabled and setup(device).rank == 1
    for var, value in {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(var, value)
    init, set_device = _Recorder(), _Recorder()
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", init)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    info = setup(device)
    assert info == DistInfo(world_size=4, rank=2, local_rank=1, local_world_size=2, initialized_here=True)
    assert info.enabled and not info.is_main
    assert init.calls == [((), {"backend": backend})]
    assert set_device.calls == ([((1,), {})] if device == "cuda" else [])
    # without the local variables: local rank 0, every process on this machine
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    info = setup("cpu")
    assert (info.local_rank, info.local_world_size) == (0, 4)
    # a group someone else started is joined, not started again
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    init.calls.clear()
    info = setup("cpu")
    assert not info.initialized_here and init.calls == [] and info.world_size == 4


def test_cleanup_and_barrier_only_act_in_a_group(monkeypatch):
    import torch.distributed as dist

    from transferlab.training.distributed import barrier, cleanup

    destroy, wait = _Recorder(), _Recorder()
    monkeypatch.setattr(dist, "destroy_process_group", destroy)
    monkeypatch.setattr(dist, "barrier", wait)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    cleanup(DistInfo(world_size=2, initialized_here=False))  # someone else's group: left alone
    barrier(DistInfo())  # one process: nothing to wait for
    assert destroy.calls == [] and wait.calls == []
    cleanup(DistInfo(world_size=2, initialized_here=True))
    barrier(DistInfo(world_size=2))
    assert len(destroy.calls) == 1 and len(wait.calls) == 1
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    cleanup(DistInfo(world_size=2, initialized_here=True))  # already destroyed
    assert len(destroy.calls) == 1


def test_epoch_progress_shows_the_running_metrics_of_all_ranks(monkeypatch):
    """The progress bar of rank 0 shows this rank's running loss/accuracy and all ranks' images/s."""
    from transferlab.training import loop

    bars = []

    class Bar:
        def __init__(self, description, total, enabled=True):
            self.description, self.total, self.enabled, self.updates = description, total, enabled, []
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, step, **kw):
            self.updates.append((step, kw))

    monkeypatch.setattr(loop, "_EpochBar", Bar)
    monkeypatch.setattr(torch.distributed, "all_reduce", _OtherRank([0.0, 0, 0]))
    clock = iter(float(t) for t in range(100, 200))
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        losses = nn.functional.cross_entropy(net(x), y, reduction="none")
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    trainer = Trainer(net, net, [(x[:2], y[:2]), (x[2:], y[2:])], [], optimizer=opt, total_epochs=3,
                      runtime=Runtime(dist=DistInfo(world_size=2, rank=0), progress=True, verbose=False))
    trainer.train_one_epoch(2)
    (bar,) = bars
    assert (bar.description, bar.total) == ("epoch 2/3", 2)
    assert [step for step, _ in bar.updates] == [1, 2]
    (_, first), (_, second) = bar.updates
    assert first["loss"] == pytest.approx(float(losses[:2].mean())) and first["acc"] == 1.0 and first["lr"] == 0.0
    assert second["loss"] == pytest.approx(float(losses.mean())) and second["acc"] == 0.75
    assert (first["ips"], second["ips"]) == (2 * 2 / 1, 4 * 2 / 2)  # images/s of both ranks: this rank's x 2
    assert Trainer(net, net, [], [], optimizer=opt,
                   runtime=Runtime(dist=DistInfo(world_size=2, rank=1), progress=True)).progress is False
    assert Trainer(net, net, [], [], optimizer=opt, runtime=Runtime(progress=False)).progress is False
    trainer = Trainer(net, net, [(x, y)], [], optimizer=opt, runtime=Runtime(progress=False, verbose=False))
    trainer.train_one_epoch(1)
    assert bars[-1].description == "epoch 1" and bars[-1].enabled is False
    assert trainer.evaluate() == {"val_loss": pytest.approx(float("nan"), nan_ok=True),
                                  "val_acc": pytest.approx(float("nan"), nan_ok=True)}


class _ModeProbe(nn.Module):
    """Logits from a fixed linear map, plus 5 on class 1 while in training mode (so the mode shows)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(2))
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        out = self.linear(x)
        return out + torch.tensor([0.0, 5.0]) if self.training else out


class _Loader(list):
    """A list of batches with a sampler that records set_epoch, like the training loader."""

    def __init__(self, batches):
        super().__init__(batches)
        self.sampler = _Recorder()
        self.sampler.set_epoch = self.sampler


def test_one_epoch_trains_in_train_mode_steps_the_optimizer_and_validates_in_eval_mode(monkeypatch):
    from transferlab.training import loop

    clock = iter(float(t) for t in range(100, 200))  # seconds since some start, not zero
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    bars = []

    class Bar:
        def __init__(self, description, total, enabled=True):
            self.updates = []
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, step, **kw):
            self.updates.append(kw["ips"])

    monkeypatch.setattr(loop, "_EpochBar", Bar)
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1, 0])
    net = _ModeProbe()
    reference = _ModeProbe()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    loader = _Loader([(x[:2], y[:2]), (x[2:], y[2:])])
    trainer = Trainer(net, net, loader, [(x, y)], optimizer=opt, runtime=Runtime(progress=True, verbose=False))
    logs = trainer.train_one_epoch(3)
    assert loader.sampler.calls == [((3,), {})]  # the epoch's order and augmentation
    assert net.modes == [True, True] and logs["lr"] == 0.1 and logs["images"] == 4
    # the same two SGD steps by hand (zero_grad, backward, step per batch)
    losses = []
    reference.train()
    for xb, yb in ((x[:2], y[:2]), (x[2:], y[2:])):
        ref_opt.zero_grad()
        loss = nn.functional.cross_entropy(reference(xb), yb)
        loss.backward()
        ref_opt.step()
        losses.append(loss.item())
    torch.testing.assert_close(net.linear.weight, reference.linear.weight)
    assert logs["train_loss"] == pytest.approx(sum(losses) / 2)
    assert bars[0].updates == [2 / 1, 4 / 2]  # images/s on the clock: 2 images after 1 s, 4 after 2 s
    # validation: eval mode (no +5 on class 1), on the loader given or else the validation loader
    val = trainer.evaluate()
    with torch.no_grad():
        want = nn.functional.cross_entropy(reference.eval()(x), y)
    assert net.modes[-1] is False and val["val_loss"] == pytest.approx(float(want))
    other = trainer.evaluate([(x[:1], y[:1])])
    assert other["val_acc"] == 1.0 and other["val_loss"] < val["val_loss"]


def test_a_one_image_epoch_averages_over_that_image(monkeypatch):
    net = nn.Linear(2, 2, bias=False)
    x, y = torch.tensor([[1.0, 3.0]]), torch.tensor([0])  # predicted class 1: wrong
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
        want = float(nn.functional.cross_entropy(net(x), y))
    trainer = Trainer(net, net, [(x, y)], [], optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
                      runtime=Runtime(progress=False, verbose=False))
    logs = trainer.train_one_epoch(1)
    assert logs["train_loss"] == pytest.approx(want) and logs["train_acc"] == 0.0 and logs["images"] == 1
    right = Trainer(net, net, [(torch.tensor([[3.0, 1.0]]), y)], [], optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
                    runtime=Runtime(progress=False, verbose=False)).train_one_epoch(1)
    assert right["train_acc"] == 1.0  # one image, predicted right: 1/1
    empty = Trainer(net, net, [], [], optimizer=torch.optim.SGD(net.parameters(), lr=0.0),
                    runtime=Runtime(progress=False, verbose=False)).train_one_epoch(1)
    assert (empty["train_loss"], empty["train_acc"], empty["images"]) == (0.0, 0.0, 0)


def test_the_sums_travel_on_the_trainers_device(monkeypatch):
    """nccl reduces tensors on the GPU: the sums are put on the device given (here the meta device stands in)."""
    devices = []

    class Stop(Exception):
        pass

    def record(tensor, op=None):
        devices.append((tensor.device, tensor.dtype, tensor.shape))
        raise Stop

    monkeypatch.setattr(torch.distributed, "all_reduce", record)
    with pytest.raises(Stop):
        all_reduce_sum([1.0, 2.0, 3.0], DistInfo(world_size=2), torch.device("meta"))
    assert devices == [(torch.device("meta"), torch.float64, (3,))]
