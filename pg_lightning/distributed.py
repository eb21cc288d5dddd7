"""Reductions and gathers over the processes of a run, through the Trainer's strategy.

On one process they return their input unchanged and create no tensor; under DDP every process
must call them in the same order (they are collectives).
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import lightning as L
import torch
from torch import Tensor


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def reduce(trainer: L.Trainer, values: list[float], op: str = "sum") -> list[float]:
    """``values`` reduced element-wise over all processes with ``op`` (``sum``, ``mean``, ``min``, ``max``)."""
    if trainer.world_size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float32, device=trainer.strategy.root_device)
    return trainer.strategy.reduce(tensor, reduce_op=op).tolist()


def gather_objects(trainer: L.Trainer, obj: Any) -> list[Any]:
    """``obj`` (picklable) from every process, in rank order."""
    if trainer.world_size == 1:
        return [obj]
    device = trainer.strategy.root_device
    data = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8)
    sizes = trainer.strategy.all_gather(torch.tensor([data.numel()], device=device)).flatten().tolist()
    padded = torch.zeros(max(sizes), dtype=torch.uint8)
    padded[: data.numel()] = data
    gathered: Tensor = trainer.strategy.all_gather(padded.to(device)).cpu()
    return [pickle.loads(row[:size].numpy().tobytes()) for row, size in zip(gathered, sizes)]


def gather_rows(trainer: L.Trainer, row: Tensor) -> Tensor:
    """``[world_size, *row.shape]``: every process's ``row`` (a CPU tensor), on the CPU."""
    if trainer.world_size == 1:
        return row.unsqueeze(0)
    return trainer.strategy.all_gather(row.to(trainer.strategy.root_device)).cpu()
