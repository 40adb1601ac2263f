"""DistributedDataParallel set-up for ``torchrun --nproc_per_node N -m transferlab train ...``.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` the process
group starts with ``gloo`` on CPU and ``nccl`` on CUDA. Rank 0 alone writes the run folder,
prints and shows progress; metrics are summed over ranks with ``all_reduce``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field


import torch
import torch.distributed as dist

from .._logging import ROOT as LOG_ROOT
from .._logging import quiet_below_warning


@dataclass
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world_size: int = 1
    initialized_here: bool = False
    log_level: int | None = field(default=None, compare=False)  # transferlab's log level before a rank > 0 was quieted

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """This process's rank as torchrun sets it (0 when not under torchrun)."""
    return int(os.environ.get("RANK", "0"))


def setup(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (no-op for a single process)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    info = DistInfo(world_size=world, rank=env_rank(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
        info.initialized_here = True
    if info.rank != 0:  # rank 0 speaks for all
        info.log_level = quiet_below_warning()
    return info


def cleanup(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()
    if info.log_level is not None:
        logging.getLogger(LOG_ROOT).setLevel(info.log_level)
        info.log_level = None


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (identity for a single process)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
