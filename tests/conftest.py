import os

import gymnasium as gym
import numpy as np
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


@pytest.fixture
def quiet_trainer_kwargs(tmp_path):
    """Trainer settings for short test runs: CSV logs in tmp_path, no bar, no checkpoints."""
    from lightning.pytorch.loggers import CSVLogger

    return dict(
        max_epochs=-1,
        logger=CSVLogger(tmp_path, name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )


class CounterEnv(gym.Env):
    """Episodes of a random length in [1, max_length], drawn at reset and independent of the
    actions; observations ``[env steps taken by all CounterEnvs so far, step within the episode]``."""

    observation_space = gym.spaces.Box(0.0, 1e9, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    steps = 0  # over every instance, so observations order the steps of all envs in time

    def __init__(self, max_length: int = 20):
        self.max_length, self.t, self.length = max_length, 0, 1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length = 0, int(self.np_random.integers(1, self.max_length + 1))
        return self._obs(), {}

    def step(self, action):
        CounterEnv.steps += 1
        self.t += 1
        return self._obs(), 1.0, self.t >= self.length, False, {}

    def _obs(self):
        return np.array([CounterEnv.steps, self.t], dtype=np.float32)


gym.register("PGLTest/Counter-v0", entry_point=CounterEnv)
