"""DistributedDataParallel on CPU: ``torchrun --nproc_per_node 2 -m transferlab train ...`` with gloo."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from transferlab.checkpoint import read_meta


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def test_torchrun_two_gloo_processes_train_one_run(digits_dir, tmp_path):
    env = {**os.environ, "TRANSFERLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    runs = tmp_path / "runs"
    cmd = [*_torchrun(), "--nproc_per_node", "2", "--standalone", "-m", "transferlab", "train", str(digits_dir),
           "--model", "cnn_bn", "--epochs", "2", "--fine-tune", "1", "--input-size", "32", "--batch-size", "16",
           "--run-dir", str(runs), "--name", "ddp", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["ddp"]  # exactly one run folder
    run = runs / "ddp"
    assert sorted(p.name for p in run.glob("*.safetensors")) == ["best.safetensors", "last.safetensors"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["world_size"] == 2
    lines = (run / "history.csv").read_text().splitlines()
    assert len(lines) == 1 + 3  # header + 2 head-only epochs + 1 fine-tuning epoch
    assert proc.stdout.count("epoch 3/3") == 1  # rank 0 alone prints
    meta = read_meta(run, "last")
    assert meta["epoch"] == 3
    # metrics are summed over both ranks: accuracy over all 60 validation images
    for line in lines[1:]:
        val_acc = float(line.split(",")[4])
        assert abs(val_acc * 60 - round(val_acc * 60)) < 1e-6
