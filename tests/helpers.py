"""Helpers shared by several test files."""

import json
import os
import struct
from pathlib import Path
from typing import Any

import lightning as L
import torch


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment as a new user's whose home is ``home``: no W&B settings or credentials,
    no netrc or proxy of this machine's; plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WANDB_") and k != "NETRC" and not k.lower().endswith("_proxy")}
    return {**env, "HOME": str(home), **extra}


def quiet_trainer(**kwargs) -> L.Trainer:
    """A Trainer for short in-process runs: no logger, checkpoints, bar or summary; ``max_epochs=-1``."""
    defaults = dict(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


class DevicesSeen(L.Callback):
    """The device of the policy's weights at every update (Lightning moves a module back to the
    CPU when ``fit`` ends, so checking afterwards says nothing)."""

    def __init__(self):
        self.types: set[str] = set()

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.types.add(module.policy.actor_out.weight.device.type)


def assert_same_gradients(module: torch.nn.Module, loss_a: torch.Tensor, loss_b: torch.Tensor) -> None:
    """Both losses give the same gradient on every parameter of ``module.policy``."""
    grads = []
    for loss in (loss_a, loss_b):
        module.zero_grad()
        loss.backward()
        grads.append([p.grad.clone() for p in module.policy.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def wandb_records(run_file: str | Path) -> list:
    """The protobuf records of an offline W&B run file (``run-<id>.wandb``): a LevelDB-style log
    of 32 KiB blocks after a 7-byte file header, each record split into chunks with a 7-byte
    header (CRC, length, kind: 1 whole, 2 first, 3 middle, 4 last)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block = Path(run_file).read_bytes(), 32768
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run(run_file: str | Path) -> dict[str, Any]:
    """What an offline W&B run holds: ``run`` (id, name, group), ``config`` (key -> value),
    ``history`` (rows of key -> value), ``metrics`` (name -> step metric of definitions by name),
    ``globs`` (glob -> step metric) and ``artifacts`` (names)."""
    run: dict[str, Any] = {"config": {}, "history": [], "metrics": {}, "globs": {}, "artifacts": []}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["run"] = record.run
            run["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in record.history.item})
        elif kind == "metric" and record.metric.name:
            run["metrics"][record.metric.name] = record.metric.step_metric
        elif kind == "metric":
            run["globs"][record.metric.glob_name] = record.metric.step_metric
        elif kind == "artifact":
            run["artifacts"].append(record.artifact.name)
    return run
