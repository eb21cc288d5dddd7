"""Fingerprints of short training runs, to show that a change leaves training bit-identical.

Trains each config for a few thousand env steps on seed 3 and prints the env steps, the last-100
return and a hash of the final weights. ``benchmarks/same_training.sh REV`` runs it at REV and
here and compares: equal lines mean the seed-robustness results measured at REV still hold.
"""

import hashlib
from pathlib import Path

import lightning as L
import torch

try:
    from pg_lightning.registry import model_from_config
except ImportError:  # before model_from_config moved to the registry
    from pg_lightning.cli import model_from_config

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"cartpole_reinforce.yaml": 20_000, "cartpole_reinforce_baseline.yaml": 20_000, "cartpole_ppo.yaml": 20_000,
        "cartpole_a2c.yaml": 20_000, "acrobot_ppo.yaml": 8_000, "pendulum_ppo.yaml": 8_000,
        "lunarlander_ppo.yaml": 8_000, "halfcheetah_ppo.yaml": 4_096}

if __name__ == "__main__":
    torch.set_num_threads(1)
    for config, steps in RUNS.items():
        model = model_from_config(str(ROOT / "configs" / config), seed=3, max_env_steps=steps)
        L.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False).fit(model)
        weights = hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in model.policy.parameters())).hexdigest()
        print(f"{config} {model.env_steps} {model.return_last100:.4f} {weights[:16]}", flush=True)
