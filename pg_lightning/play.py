"""Watch a trained agent: play episodes of a checkpoint's policy in its own env.

``python -m pg_lightning.play CKPT [--episodes N] [--video out.mp4] [--deterministic | --stochastic]``

The env is the checkpoint's: its ``env_id``, ``env_kwargs`` and ``wrappers``; observation
normalisation uses the checkpointed statistics, frozen. Episode ``k`` is reset with ``seed + k``,
so a checkpoint and a seed always give the same ``--deterministic`` returns (the default: the
evaluation's argmax / Gaussian mean; ``evaluation.evaluate`` with that seed gives the same). Prints each
episode's return and length (the env's own, as in training);
``--video`` writes every episode into one mp4 (needs ``moviepy``; no display needed).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from pg_lightning.envs import make_env
from pg_lightning.errors import ConfigError, MissingExtra
from pg_lightning.evaluation import deterministic_actor, play_episode, stochastic_actor
from pg_lightning.registry import add_checkpoint_arguments, load_module


class FrameRecorder(gym.Wrapper):
    """Keeps the rendered frame of every reset and step (for one mp4 of all episodes)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.frames: list[np.ndarray] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        result = self.env.reset(**kwargs)
        self.frames.append(self.env.render())
        return result

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        result = self.env.step(action)
        self.frames.append(self.env.render())
        return result


def write_video(frames: list[np.ndarray], path: Path, fps: int) -> None:
    from moviepy import ImageSequenceClip

    path.parent.mkdir(parents=True, exist_ok=True)
    ImageSequenceClip(frames, fps=fps).write_videofile(str(path), logger=None)


def play(
    checkpoint: str | Path, episodes: int = 5, video: str | Path | None = None, deterministic: bool = True,
    seed: int = 0, trusted: bool = False, allow: Sequence[str] = (), seed_index: int = 0,
) -> list[tuple[float, int]]:
    """Play ``episodes`` episodes of a checkpoint's policy; returns ``(return, length)`` per episode.
    ``trusted`` / ``allow``: what the checkpoint may run (``registry.load_module``)."""
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    if video is not None and importlib.util.find_spec("moviepy") is None:  # before playing, not after
        raise MissingExtra("--video needs moviepy: pip install 'pg_lightning[video]'")
    from pg_lightning.hub_download import resolve_checkpoint

    checkpoint = resolve_checkpoint(checkpoint, trusted)  # hf://USER/NAME: downloaded, never trusted
    module = load_module(checkpoint, trusted=trusted, allow=allow, seed_index=seed_index)
    hp = module.hparams
    if video is not None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen
        env = make_env(hp.env_id, hp.env_kwargs, hp.wrappers, inner=[FrameRecorder], render_mode="rgb_array")
    else:
        env = make_env(hp.env_id, hp.env_kwargs, hp.wrappers)
    try:
        act = (deterministic_actor(module.policy, env.action_space) if deterministic
               else stochastic_actor(module.policy, env.action_space, seed))
        results = [play_episode(env, act, seed + k) for k in range(episodes)]
    finally:
        env.close()
    if video is not None:
        recorder = env
        while not isinstance(recorder, FrameRecorder):
            recorder = recorder.env
        write_video(recorder.frames, Path(video), int(env.metadata.get("render_fps") or 30))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pg_lightning.play", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt written by Reinforce, A2C or PPO, or hf://USER/NAME (Hugging Face Hub)")
    parser.add_argument("--episodes", type=int, default=5, help="episodes to play (default 5)")
    parser.add_argument("--video", help="write the episodes to this mp4 file")
    parser.add_argument("--seed", type=int, default=0, help="episode k resets with seed + k (default 0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                      help="argmax / Gaussian mean, as evaluation plays (default)")
    mode.add_argument("--stochastic", dest="deterministic", action="store_false",
                      help="sample actions, as training plays")
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    try:
        results = play(args.checkpoint, args.episodes, args.video, args.deterministic, args.seed, args.trust_checkpoint,
                       args.allow, args.seed_index)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for k, (total, length) in enumerate(results):
        print(f"episode {k}: return {total:g}, length {length}")
    returns = [total for total, _ in results]
    print(f"mean return {np.mean(returns):g} over {len(results)} episodes" + (f"; video {args.video}" if args.video else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
