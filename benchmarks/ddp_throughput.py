"""Env steps per second of PPO training with 1 and 2 CPU processes (Lightning DDP, gloo).

    python benchmarks/ddp_throughput.py                 # runs both and prints a table
    python benchmarks/ddp_throughput.py --devices 2     # one measurement (Lightning re-launches it per rank)

Each process plays its own ``--num-envs`` envs, so 2 processes collect twice the transitions per
update; steps/s counts all processes' env steps (train/env_steps) over the training time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(devices: int, updates: int, num_envs: int) -> None:
    import lightning as L
    import torch

    from pg_lightning.registry import model_from_config

    torch.set_num_threads(1)

    class Clock(L.Callback):
        def on_train_start(self, trainer, module):
            self.start, self.steps = time.perf_counter(), module.env_steps

        def on_train_end(self, trainer, module):
            if trainer.is_global_zero:
                seconds = time.perf_counter() - self.start
                print(f"RESULT {devices} {module.env_steps - self.steps} {seconds:.3f}", flush=True)

    module = model_from_config(str(ROOT / "configs/cartpole_ppo.yaml"), num_envs=num_envs, max_env_steps=None,
                               anneal_lr=False)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_epochs=updates, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Clock()])
    trainer.fit(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=None)
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--num-envs", type=int, default=32, help="envs per process")
    args = parser.parse_args()
    if args.devices is not None:
        measure(args.devices, args.updates, args.num_envs)
        return
    print(f"PPO on CartPole-v1, {args.num_envs} envs x 16 steps per process per update, {args.updates} updates")
    print(f"{'processes':>9} {'env steps':>10} {'seconds':>8} {'steps/s':>9}")
    for devices in (1, 2):
        out = subprocess.run([sys.executable, __file__, "--devices", str(devices), "--updates", str(args.updates),
                              "--num-envs", str(args.num_envs)], capture_output=True, text=True, check=True).stdout
        _, _, steps, seconds = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
        print(f"{devices:>9} {int(steps):>10} {float(seconds):>8.2f} {int(steps) / float(seconds):>9.0f}")


if __name__ == "__main__":
    main()
