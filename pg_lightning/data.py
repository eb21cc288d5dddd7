"""The rollout collector and the IterableDatasets that feed Lightning.

One ``Collector`` plays a policy in a vector env; ``EpisodeDataset`` turns its transitions into
batches of whole episodes (REINFORCE), ``RolloutDataset`` into fixed ``n_steps × num_envs``
rollouts (A2C, PPO). Each dataset yields exactly one batch per iteration, so one Lightning epoch is
one batch is one policy update, and the batch is always collected by the current weights.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import IterableDataset

from pg_lightning.envs import Vectorization, make_vector_env, rng_states, set_rng_states


@dataclass
class Batch:
    """Transitions in time-major layout ``[T, N, ...]``.

    Episode batches are whole episodes laid end to end in one column (``N = 1``). ``mask`` is
    False on gymnasium's autoreset steps, which are resets, not transitions; ``next_observations``
    holds s_{t+1} (the final observation where an episode ended). ``episode_returns`` and
    ``episode_lengths`` describe the episodes that finished during this batch.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    mask: Tensor
    next_observations: Tensor
    episode_returns: Tensor
    episode_lengths: Tensor

    @property
    def num_steps(self) -> int:
        """Real transitions in the batch (autoreset steps excluded)."""
        return int(self.mask.sum())


_STEP_FIELDS = [f.name for f in fields(Batch)][:7]


class Collector:
    """Plays a policy in ``num_envs`` gymnasium envs and records transitions.

    Env ``i`` is seeded with ``seed + i``; actions are sampled from a torch generator seeded from
    ``seed``, so a collector's stream depends on its seed alone. Box actions are clipped to the
    space's bounds before ``env.step`` (the unclipped sample is what is recorded).
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        env_kwargs: dict[str, Any] | None = None,
        vectorization: Vectorization = "auto",
        seed: int = 0,
        window: int = 100,
    ):
        self.env = make_vector_env(env_id, num_envs, env_kwargs, vectorization)
        self.num_envs, self.seed = num_envs, seed
        space = self.env.single_action_space
        self._bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        self.recent_returns: deque[float] = deque(maxlen=window)
        self._generator: torch.Generator | None = None
        self._generator_state: Tensor | None = None
        self._burn_draw = False
        self._obs, _ = self.env.reset(seed=seed)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._rows: list[dict[str, np.ndarray]] = []  # steps of episodes still in progress
        self._starts = np.zeros(num_envs, dtype=np.int64)  # where each env's episode starts in _rows

    def _generator_for(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device).manual_seed(self.seed)
            if self._generator_state is not None:
                self._generator.set_state(self._generator_state)
                self._generator_state = None
        return self._generator

    def _step(self, policy: nn.Module, device: torch.device) -> tuple[dict[str, np.ndarray], Any]:
        generator = self._generator_for(device)
        obs = torch.as_tensor(self._obs, device=device)
        if self._burn_draw:  # replay the action draw of the autoreset step a resume skipped
            policy.act(obs, generator)
            self._burn_draw = False
        actions = policy.act(obs, generator).cpu().numpy()
        env_actions = np.clip(actions, *self._bounds) if self._bounds is not None else actions
        next_obs, rewards, terminated, truncated, info = self.env.step(env_actions)
        row = {
            "observations": self._obs,
            "actions": actions,
            "rewards": rewards,
            "terminated": terminated,
            "truncated": truncated,
            "mask": ~self._autoreset,
            "next_observations": next_obs,
        }
        self._autoreset = terminated | truncated
        self._obs = next_obs
        return row, info

    def _record(self, info: dict, returns: list[float], lengths: list[int]) -> None:
        if "episode" not in info:
            return
        ended = info["_episode"]
        r, ln = info["episode"]["r"][ended].tolist(), info["episode"]["l"][ended].tolist()
        returns += r
        lengths += ln
        self.recent_returns.extend(r)

    @staticmethod
    def _batch(rows: dict[str, np.ndarray], returns: list[float], lengths: list[int]) -> Batch:
        tensors = {k: torch.as_tensor(v) for k, v in rows.items()}
        for k in ("rewards", "observations", "next_observations"):
            if tensors[k].is_floating_point():
                tensors[k] = tensors[k].float()
        return Batch(
            **tensors,
            episode_returns=torch.tensor(returns, dtype=torch.float32),
            episode_lengths=torch.tensor(lengths, dtype=torch.float32),
        )

    def rollout(self, policy: nn.Module, n_steps: int) -> Batch:
        """The next ``n_steps`` steps of every env, ``[n_steps, num_envs, ...]``."""
        device = next(policy.parameters()).device
        returns: list[float] = []
        lengths: list[int] = []
        rows = []
        with torch.inference_mode():
            for _ in range(n_steps):
                row, info = self._step(policy, device)
                rows.append(row)
                self._record(info, returns, lengths)
        return self._batch({k: np.stack([r[k] for r in rows]) for k in _STEP_FIELDS}, returns, lengths)

    def episodes(self, policy: nn.Module, min_episodes: int) -> Batch:
        """Whole episodes, laid end to end as ``[T, 1, ...]``, at least ``min_episodes`` of them.

        With several envs, all episodes that end on the step the count is reached are included,
        and episodes still running carry over to the next batch (dropping them would bias the
        batch towards short episodes).
        """
        device = next(policy.parameters()).device
        returns: list[float] = []
        lengths: list[int] = []
        finished: list[tuple[int, int, int]] = []  # (env, first row, last row)
        with torch.inference_mode():
            while len(finished) < min_episodes:
                row, info = self._step(policy, device)
                self._rows.append(row)
                self._record(info, returns, lengths)
                t = len(self._rows) - 1
                for i in np.flatnonzero(row["mask"] & (row["terminated"] | row["truncated"])):
                    finished.append((int(i), int(self._starts[i]), t))
                    self._starts[i] = t + 1
        stacked = {k: np.stack([r[k] for r in self._rows]) for k in _STEP_FIELDS}
        pieces = []
        for i, first, last in finished:
            keep = stacked["mask"][first : last + 1, i]
            pieces.append({k: v[first : last + 1, i][keep] for k, v in stacked.items()})
        episode_rows = {k: np.concatenate([p[k] for p in pieces])[:, None] for k in _STEP_FIELDS}
        keep_from = int(self._starts.min())
        self._rows = self._rows[keep_from:]
        self._starts -= keep_from
        return self._batch(episode_rows, returns, lengths)

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs beyond the weights: RNG states and the returns window."""
        generator = self._generator.get_state() if self._generator is not None else None
        return {
            "seed": self.seed,
            "num_envs": self.num_envs,
            "recent_returns": list(self.recent_returns),
            "generator": generator if generator is not None else self._generator_state,
            "env_rng": rng_states(self.env),
            "autoreset": self._autoreset.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved state into a collector built with the same settings.

        Envs restart their episodes from their restored generators. When every env was waiting
        for its autoreset (episode batches end that way with one env), this replays exactly what
        the uninterrupted run does next, so the resumed run is identical to it.
        """
        if state["num_envs"] != self.num_envs:
            raise ValueError(f"checkpoint has {state['num_envs']} envs, this run {self.num_envs}")
        self.recent_returns.clear()
        self.recent_returns.extend(state["recent_returns"])
        self._generator, self._generator_state = None, state["generator"]
        set_rng_states(self.env, state["env_rng"])
        self._obs, _ = self.env.reset()
        self._autoreset[:] = False
        self._rows, self._starts[:] = [], 0
        self._burn_draw = bool(np.all(state["autoreset"]))

    def close(self) -> None:
        self.env.close()


class EpisodeDataset(IterableDataset):
    """Yields one batch of ``episodes_per_batch`` whole episodes played by ``policy``'s current weights."""

    def __init__(self, collector: Collector, policy: nn.Module, episodes_per_batch: int = 1):
        self.collector, self.policy, self.episodes_per_batch = collector, policy, episodes_per_batch

    def __iter__(self):
        yield self.collector.episodes(self.policy, self.episodes_per_batch)


class RolloutDataset(IterableDataset):
    """Yields one ``n_steps × num_envs`` rollout played by ``policy``'s current weights."""

    def __init__(self, collector: Collector, policy: nn.Module, n_steps: int):
        self.collector, self.policy, self.n_steps = collector, policy, n_steps

    def __iter__(self):
        yield self.collector.rollout(self.policy, self.n_steps)
