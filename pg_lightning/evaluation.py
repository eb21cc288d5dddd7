"""Evaluation episodes: the deterministic policy in its own, separately seeded env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.utils.data import IterableDataset

from pg_lightning.policies import ActorCritic

EVAL_SEED_OFFSET = 1_000_003  # evaluation episodes never share seeds with training envs


@torch.inference_mode()
def evaluate(
    policy: ActorCritic,
    env_id: str,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    video_folder: str | Path | None = None,
    video_prefix: str = "eval",
) -> dict[str, np.ndarray]:
    """Play ``episodes`` episodes with the deterministic action (argmax / Gaussian mean).

    Episode ``k`` resets with seed ``seed + k``, so the same weights always give the same
    results. Observation statistics are used as they are, never updated. With ``video_folder``
    the first episode is recorded there as an mp4 (needs ``moviepy``; no display required).
    Returns ``{"returns": [episodes], "lengths": [episodes]}``.
    """
    kwargs = dict(env_kwargs or {})
    if video_folder is not None:
        kwargs["render_mode"] = "rgb_array"
    env = gym.make(env_id, **kwargs)
    if video_folder is not None:
        env = gym.wrappers.RecordVideo(
            env, str(video_folder), episode_trigger=lambda k: k == 0, name_prefix=video_prefix,
            disable_logger=True,
        )
    space = env.action_space
    bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
    device = next(policy.parameters()).device
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            done = False
            while not done:
                action = policy(torch.as_tensor(obs, device=device).unsqueeze(0))[0].cpu().numpy()
                if bounds is not None:
                    action = np.clip(action, *bounds)
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[k] += float(reward)
                lengths[k] += 1
                done = terminated or truncated
    finally:
        env.close()
    return {"returns": returns, "lengths": lengths}


class EvaluationDataset(IterableDataset):
    """Yields one batch: the results of ``evaluate`` on the module's current policy."""

    def __init__(self, play):
        self.play = play

    def __iter__(self):
        results = self.play()
        yield {k: torch.as_tensor(v, dtype=torch.float32) for k, v in results.items()}
