"""Env steps per second with the policy on the GPU against the CPU, in the same process.

1. Collection: ``Collector.rollout`` of the seed network in 256, 1024, 4096 and 8192 CartPole
   envs (the natively vectorised CartPole); on the CPU the numpy actor, on the GPU the torch
   forward with only the distribution parameters copied back.
2. Training end to end (``Trainer.fit``, env steps / wall seconds after a warm-up update): PPO on
   CartPole with 1024 envs, ``configs/halfcheetah_ppo.yaml``, ``configs/minatar_breakout_ppo.yaml``
   and ``configs/breakout_ppo.yaml`` (the last two need the ``minatar`` / ``atari`` extras and
   are skipped without them).

Without a GPU it measures the CPU column only. Needs no CLI packages (W&B, jsonargparse).

    python benchmarks/devices.py [--seconds 20] [--only collection|training]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import lightning as L
import torch

from pg_lightning import PPO, Collector
from pg_lightning.policies import ActorCritic
from pg_lightning.registry import model_from_config

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def collection(num_envs: int, device: str, seconds: float) -> float:
    """Transitions per second of rollouts of 16 steps in ``num_envs`` CartPole envs."""
    collector = Collector("CartPole-v1", num_envs, seed=0)
    policy = ActorCritic(collector.env.single_observation_space, collector.env.single_action_space).to(device)
    collector.rollout(policy, 16)  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += collector.rollout(policy, 16).num_steps
    collector.close()
    return steps / (time.perf_counter() - start)


class Clock(L.Callback):
    """Env steps and seconds from the end of the first update (compilation, allocation and
    env start-up excluded) to the end of training."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, None

    def on_train_batch_end(self, trainer, module, *args) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = (now, module.env_steps)
        elif now - self.start[0] > self.seconds:
            trainer.should_stop = True
        self.end = (now, module.env_steps)

    @property
    def rate(self) -> float:
        return (self.end[1] - self.start[1]) / (self.end[0] - self.start[0])


def training(make, device: str, seconds: float) -> float:
    """Env steps per second of ``Trainer.fit`` on ``device`` for about ``seconds``."""
    clock = Clock(seconds)
    trainer = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[clock])
    trainer.fit(make())
    return clock.rate


TRAINING = {
    "PPO CartPole-v1, 1024 envs × 16 steps": (None, lambda: PPO(
        num_envs=1024, n_steps=16, minibatch_size=4096, update_epochs=4, max_env_steps=None)),
    "configs/halfcheetah_ppo.yaml": ("mujoco", lambda: model_from_config(
        str(ROOT / "configs/halfcheetah_ppo.yaml"), max_env_steps=None, anneal_lr=False)),
    "configs/minatar_breakout_ppo.yaml": ("minatar", lambda: model_from_config(
        str(ROOT / "configs/minatar_breakout_ppo.yaml"), max_env_steps=None)),
    "configs/breakout_ppo.yaml": ("ale_py", lambda: model_from_config(
        str(ROOT / "configs/breakout_ppo.yaml"), max_env_steps=None, anneal_lr=False)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per cell")
    parser.add_argument("--only", choices=("collection", "training"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {name}; 1 CPU thread for torch; env steps/s")
    header = "| | " + " | ".join(DEVICES) + " |" + (" GPU / CPU |" if len(DEVICES) == 2 else "")
    rule = "|---|" + "---:|" * (len(DEVICES) + (len(DEVICES) == 2))

    def row(label: str, rates: list[float]) -> None:
        ratio = f" | {rates[1] / rates[0]:.2f}" if len(rates) == 2 else ""
        print(f"| {label} | " + " | ".join(f"{r:,.0f}" for r in rates) + ratio + " |", flush=True)

    if args.only != "training":
        print(f"\nCollection, seed network (4-128-2), rollouts of 16 steps\n{header}\n{rule}")
        for num_envs in (256, 1024, 4096, 8192):
            row(f"{num_envs} CartPole envs", [collection(num_envs, d, args.seconds / 4) for d in DEVICES])
    if args.only != "collection":
        print(f"\nTraining (Trainer.fit), after the first update\n{header}\n{rule}")
        for label, (needs, make) in TRAINING.items():
            if needs is not None and importlib.util.find_spec(needs) is None:
                print(f"| {label} | skipped: {needs} is not installed |")
                continue
            row(label, [training(make, d, args.seconds) for d in DEVICES])


if __name__ == "__main__":
    main()
