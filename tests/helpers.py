"""Helpers shared by several test files."""

import csv
import json
import os
import struct
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from pg_lightning import Batch, Collector
from pg_lightning.policies import ActorCritic


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


# ---- collectors and short fits --------------------------------------------------------------
def collector_and_policy(env_id="CartPole-v1", num_envs=1, seed=0, **kwargs):
    """A Collector and a policy for its spaces, the same weights whatever the global RNG."""
    collector = Collector(env_id, num_envs, seed=seed, **kwargs)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        policy = ActorCritic(collector.env.single_observation_space, collector.env.single_action_space)
    return collector, policy


def fit(module, epochs, log_dir=None, callbacks=()):
    """A short fit in a fresh quiet Trainer; CSV logs under ``log_dir`` if given."""
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=CSVLogger(log_dir, name="run") if log_dir is not None else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=list(callbacks),
    )
    trainer.fit(module)
    return trainer


def fit_on_batch(cls, batch, epochs=1, **kwargs):
    """``cls(**kwargs)`` after ``epochs`` updates on the given batch instead of collected ones."""

    class OnFixedBatch(cls):
        def train_dataloader(self):
            return DataLoader([batch], batch_size=None)

    module = OnFixedBatch(**kwargs)
    fit(module, epochs)
    return module


def read_csv(trainer):
    with open(f"{trainer.logger.log_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


def column(rows, key):
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def same_params(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


class RecordBatches(L.Callback):
    """Keeps every batch the module trained on."""

    def __init__(self):
        self.batches = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches.append(batch)


class PerUpdate(L.Callback):
    """What a callback sees after every update: the module's counters and the callback metrics."""

    def __init__(self):
        self.returns, self.env_steps, self.metrics = [], [], []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.returns.append(pl_module.return_last100)
        self.env_steps.append(pl_module.env_steps)
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


# ---- the actor-critic algorithms -----------------------------------------------------------
A2C_BASE = dict(seed=0, num_envs=4, n_steps=8, lr=3e-3, max_env_steps=200)
PPO_BASE = dict(seed=0, num_envs=2, n_steps=16, update_epochs=4, minibatch_size=16, lr=1e-2,
                max_env_steps=80)


def hand_made_batch(seed=0):
    """T=4, N=2 CartPole-shaped transitions.

    Column 0: step 1 is truncated, step 2 is the autoreset step after it (mask False), step 3 is
    cut by the rollout's end (bootstrapped). Column 1: step 0 is terminated, step 1 its autoreset
    step, steps 2–3 an ongoing episode.
    """
    g = torch.Generator().manual_seed(seed)
    T, N = 4, 2
    obs = torch.randn(T + 1, N, 4, generator=g)
    next_obs = obs[1:].clone()
    observations = obs[:-1].clone()
    finals = torch.randn(2, 4, generator=g)  # final observations of the two finished episodes
    next_obs[1, 0] = finals[0]
    observations[2, 0] = finals[0]  # gymnasium's autoreset step sees the final observation
    next_obs[0, 1] = finals[1]
    observations[1, 1] = finals[1]
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.zeros(T, N, dtype=torch.bool)
    truncated[1, 0] = True
    terminated[0, 1] = True
    mask = torch.ones(T, N, dtype=torch.bool)
    mask[2, 0] = False
    mask[1, 1] = False
    rewards = torch.rand(T, N, generator=g) * 2 - 0.5
    rewards[~mask] = 0.0
    return Batch(
        observations=observations,
        actions=torch.randint(0, 2, (T, N), generator=g),
        rewards=rewards,
        terminated=terminated,
        truncated=truncated,
        mask=mask,
        next_observations=next_obs,
        episode_returns=torch.tensor([3.0]),
        episode_lengths=torch.tensor([2.0]),
    )


def reference_value(policy, obs):
    trunk = policy.critic_trunk if policy.critic_trunk is not None else policy.trunk
    return policy.value_out(trunk(obs)).squeeze(-1)
