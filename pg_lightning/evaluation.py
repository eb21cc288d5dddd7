"""Evaluation episodes: the deterministic policy in its own, separately seeded env."""

from __future__ import annotations

import contextlib
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

from pg_lightning import observations
from pg_lightning.envs import WRAPPED_STATS, Wrappers, env_action, make_env
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
    wrappers: Wrappers = None,
) -> dict[str, np.ndarray]:
    """Play ``episodes`` episodes with the deterministic action (argmax / Gaussian mean).

    Episode ``k`` resets with seed ``seed + k``, so the same weights always give the same
    results. The env has the training envs' ``wrappers``; returns are the env's own, as in
    training (see ``envs.make_env``). Observation statistics are used as they are, never
    updated. With ``video_folder`` the first episode is recorded there as an mp4 (needs
    ``moviepy``; no display required). Returns ``{"returns": [episodes], "lengths": [episodes]}``.
    """
    results = {"returns": np.zeros(episodes), "lengths": np.zeros(episodes, dtype=np.int64)}
    with recorded_env(env_id, env_kwargs, wrappers, video_folder, video_prefix) as env:
        act = deterministic_actor(policy, env.action_space)
        for k in range(episodes):
            results["returns"][k], results["lengths"][k] = play_episode(env, act, seed + k)
    return results


@contextlib.contextmanager
def recorded_env(
    env_id: str, env_kwargs: dict[str, Any] | None, wrappers: Wrappers, video_folder: str | Path | None,
    video_prefix: str = "eval",
) -> Iterator[gym.Env]:
    """An evaluation env (closed on exit); with ``video_folder``, its first episode recorded as an mp4 there."""
    if video_folder is None:
        env = make_env(env_id, env_kwargs, wrappers)
    else:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, no display needed

        def record(env: gym.Env) -> gym.Env:
            with warnings.catch_warnings():  # each evaluation's files have their own prefix: nothing is overwritten
                warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
                return gym.wrappers.RecordVideo(
                    env, str(video_folder), episode_trigger=lambda k: k == 0, name_prefix=video_prefix,
                    disable_logger=True,
                )

        env = make_env(env_id, env_kwargs, wrappers, inner=[record], render_mode="rgb_array")
    try:
        yield env
    finally:
        env.close()


def deterministic_actor(policy: ActorCritic, action_space: gym.Space) -> Callable[[Any], np.ndarray]:
    """``observation -> action`` of one env: the policy's deterministic action, as evaluation plays."""
    device, to_env = next(policy.parameters()).device, env_action(action_space)

    def act(obs: Any) -> np.ndarray:
        batch = observations.apply(lambda a: torch.as_tensor(a, device=device), observations.batch_of_one(obs))
        return to_env(policy(batch)[0].cpu().numpy())

    return act


def stochastic_actor(policy: ActorCritic, action_space: gym.Space, seed: int) -> Callable[[Any], np.ndarray]:
    """``observation -> action`` of one env: an action sampled from the policy, as training plays
    one env (its generator is this actor's own, so ``one_env_sampler``'s ``close`` is not needed)."""
    (sample, _), to_env = policy.one_env_sampler(np.random.default_rng(seed)), env_action(action_space)
    return lambda obs: to_env(sample(obs))


def play_episode(env: gym.Env, act: Callable[[Any], np.ndarray], seed: int | None = None) -> tuple[float, int]:
    """One episode of ``act`` in ``env``: its return and length, as the env's own episode
    statistics report them (unclipped by wrappers, also when a wrapper ended the episode: see
    ``envs.WrapperEndedEpisodes``), else summed from the rewards seen."""
    obs, _ = env.reset(seed=seed)
    total, length, done, info = 0.0, 0, False, {}
    while not done:
        obs, reward, terminated, truncated, info = env.step(act(obs))
        total, length = total + float(reward), length + 1
        done = bool(terminated or truncated)  # numpy ints are legal flags
    for key in ("episode", WRAPPED_STATS):
        if key in info:
            return float(info[key]["r"]), int(info[key]["l"])
    return total, length


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
