"""Evaluation episodes: the deterministic policy in its own, separately seeded env."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor
from torch.utils.data import IterableDataset

from pg_lightning.loggers import axis, run_folder
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
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, no display needed
    env = gym.make(env_id, **kwargs)
    if video_folder is not None:
        with warnings.catch_warnings():  # each evaluation's files have their own prefix: nothing is overwritten
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
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


def video_folder(trainer: L.Trainer) -> Path:
    """Where a run's evaluation videos go: ``videos/`` in its run folder."""
    return run_folder(trainer) / "videos"


def log_video(loggers: list, folder: Path, prefix: str, key: str, env_steps: int, step: int) -> None:
    """Log the newest ``prefix-*.mp4`` in ``folder`` to every W&B logger, with the env step it was
    taken at (``<key's prefix>/env_steps``, the x-axis of ``key``)."""
    videos = sorted(folder.glob(f"{prefix}-*.mp4"))
    wandb_loggers = [logger for logger in loggers if isinstance(logger, WandbLogger)]
    if videos and wandb_loggers:
        import wandb

        for logger in wandb_loggers:
            logger.log_metrics({key: wandb.Video(str(videos[-1]), format="mp4"), axis(key): env_steps}, step=step)


def evaluation_metrics(results: dict[str, Tensor], prefix: str, env_steps: int) -> tuple[dict, dict]:
    """The metrics of one evaluation, split into the logged ones and those the progress bar shows."""
    returns = results["returns"]
    metrics = {
        f"{prefix}/episode_return_std": returns.std(correction=0),
        f"{prefix}/episode_length": results["lengths"].mean(),
        f"{prefix}/env_steps": float(env_steps),
    }
    return metrics, {f"{prefix}/episode_return": returns.mean()}


class EvaluationDataset(IterableDataset):
    """Yields one batch, the results of ``play()`` on the module's current policy, when ``due()``
    says this evaluation should run, and nothing otherwise."""

    def __init__(self, due: Callable[[], bool], play: Callable[[], dict[str, np.ndarray]]):
        self.due, self.play = due, play

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        if self.due():
            yield {k: torch.as_tensor(v, dtype=torch.float32) for k, v in self.play().items()}
