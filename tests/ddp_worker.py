"""A 2-process CPU DDP run for tests/test_ddp.py (Lightning re-launches this script per rank).

    python tests/ddp_worker.py OUT_DIR ALGORITHM DEVICES NUM_ENVS EPOCHS [--uneven]

Each rank writes OUT_DIR/rank<r>.json: its first batch's observations, its own env steps and its
final parameters. ``--uneven`` gives rank 0 ten-step episodes and rank 1 up-to-300-step ones.
"""

import json
import os
import sys

import gymnasium as gym
import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from pg_lightning import A2C, PPO, Reinforce

out, algorithm, devices, num_envs, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
uneven = "--uneven" in sys.argv
rank = int(os.environ.get("LOCAL_RANK", 0))
gym.register("UnevenCartPole-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv",
             max_episode_steps=10 if (uneven and rank == 0) else 300)


class Record(L.Callback):
    def __init__(self):
        self.first = None
        self.steps = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.first is None:
            self.first = batch.observations[:8].flatten().tolist()
        self.steps += batch.num_steps

    def on_train_end(self, trainer, module):
        params = torch.cat([p.detach().flatten() for p in module.parameters()]).tolist()
        with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"first": self.first, "steps": self.steps, "params": params,
                       "env_steps": module.env_steps, "world": trainer.world_size}, f)


if __name__ == "__main__":
    torch.set_num_threads(1)
    cls = {"reinforce": Reinforce, "a2c": A2C, "ppo": PPO}[algorithm]
    kwargs = dict(episodes_per_batch=2) if cls is Reinforce else dict(n_steps=16, num_envs=num_envs)
    if cls is PPO:
        kwargs.update(minibatch_size=24, update_epochs=2, target_kl=0.5)
    module = cls("UnevenCartPole-v0", seed=3, **kwargs)
    trainer = L.Trainer(
        accelerator="cpu", strategy="ddp", devices=devices, max_epochs=epochs,
        logger=CSVLogger(out, name="logs", version=0), log_every_n_steps=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Record()],
    )
    trainer.fit(module)
    trainer.save_checkpoint(os.path.join(out, "last.ckpt"))
