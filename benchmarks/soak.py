"""Soak: a long PPO run (default 1M env steps) with memory and speed sampled along the way.

Prints RSS and steps/s at every 10% of the budget; a flat RSS and a stable steps/s mean nothing
accumulates per update (rollout lists, logged tensors, autograd graphs, episode windows).

    python benchmarks/soak.py [--env-steps 1000000] [--config configs/cartpole_ppo.yaml]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from pg_lightning.registry import model_from_config

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Current resident set size (Linux /proc), else the peak so far."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Sampler(L.Callback):
    """Prints RSS (MiB) and steps/s every ``every`` env steps."""

    def __init__(self, every: int):
        self.every, self.next = every, every
        self.rows: list[tuple[int, float, float]] = []

    def on_train_start(self, trainer, module):
        self.clock, self.steps = time.perf_counter(), module.env_steps
        self.rows.append((module.env_steps, rss_mib(), float("nan")))
        print(f"{'env steps':>10} {'RSS MiB':>8} {'steps/s':>8}")
        print(f"{module.env_steps:>10} {self.rows[-1][1]:>8.1f} {'':>8}", flush=True)

    def on_train_batch_end(self, trainer, module, *args):
        if module.env_steps < self.next:
            return
        self.next += self.every
        now = time.perf_counter()
        rate = (module.env_steps - self.steps) / (now - self.clock)
        self.clock, self.steps = now, module.env_steps
        self.rows.append((module.env_steps, rss_mib(), rate))
        print(f"{module.env_steps:>10} {self.rows[-1][1]:>8.1f} {rate:>8.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/cartpole_ppo.yaml"))
    parser.add_argument("--env-steps", type=int, default=1_000_000)
    parser.add_argument("--logs", default="/tmp/pg_lightning_soak")
    args = parser.parse_args()
    torch.set_num_threads(1)
    module = model_from_config(args.config, max_env_steps=args.env_steps, anneal_lr=False)
    sampler = Sampler(args.env_steps // 10)
    trainer = L.Trainer(max_epochs=-1, logger=CSVLogger(args.logs), log_every_n_steps=10,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[sampler])
    trainer.fit(module)
    rss = [r[1] for r in sampler.rows]
    rates = [r[2] for r in sampler.rows[2:]]  # after the first interval's warm-up
    print(f"RSS start {rss[1]:.1f} MiB, end {rss[-1]:.1f} MiB (growth {rss[-1] - rss[1]:+.1f} MiB after warm-up), "
          f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB; "
          f"steps/s min {min(rates):.0f} / median {sorted(rates)[len(rates) // 2]:.0f} / max {max(rates):.0f}")


if __name__ == "__main__":
    main()
