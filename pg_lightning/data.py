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
from torch import Tensor
from torch.utils.data import IterableDataset

from pg_lightning.envs import Vectorization, make_vector_env, rng_states, set_rng_states
from pg_lightning.errors import ConfigError, TrainingError
from pg_lightning.policies import ActorCritic, Sampler


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

    Env ``i`` is seeded with ``seed + i``; actions are sampled with a numpy generator seeded from
    ``seed`` as well, so a collector's stream depends on its seed alone. Box actions are clipped
    to the space's bounds before ``env.step``; the unclipped sample is what is recorded.
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
        self.env_id, self.num_envs, self.seed = env_id, num_envs, seed
        space = self.env.single_action_space
        self._bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None
        self.recent_returns: deque[float] = deque(maxlen=window)
        self.rng = np.random.default_rng([seed, 0x5A3])  # not the envs' own streams
        self._replay_draw = False
        self._obs, _ = self.env.reset(seed=seed)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._rows: list[tuple[np.ndarray, ...]] = []  # steps of episodes still in progress
        self._starts = np.zeros(num_envs, dtype=np.int64)  # where each env's episode starts in _rows
        self._returns: list[float] = []  # episodes finished during the current batch
        self._lengths: list[int] = []

    def _step(self, sample: Sampler) -> tuple[np.ndarray, ...]:
        """One step of every env; the row follows ``_STEP_FIELDS``."""
        if self._replay_draw:  # the action draw of the autoreset step a resume skipped
            sample(self._obs, self.rng)
            self._replay_draw = False
        obs = self._obs
        actions = sample(obs, self.rng)
        env_actions = np.clip(actions, *self._bounds) if self._bounds is not None else actions
        try:
            next_obs, rewards, terminated, truncated, info = self.env.step(env_actions)
        except Exception as err:  # an env bug must name the env, not surface as a loop traceback
            raise TrainingError(f"env {self.env_id} raised in step(): {type(err).__name__}: {err}") from err
        mask = ~self._autoreset
        self._autoreset = terminated | truncated
        self._obs = next_obs
        if "episode" in info:
            ended = info["_episode"]
            returns = info["episode"]["r"][ended].tolist()
            self._returns += returns
            self._lengths += info["episode"]["l"][ended].tolist()
            self.recent_returns.extend(returns)
        return obs, actions, rewards, terminated, truncated, mask, next_obs

    def _batch(self, columns: list[np.ndarray]) -> Batch:
        for name, column in zip(_STEP_FIELDS, columns):
            if column.dtype.kind == "f" and not np.isfinite(column).all():
                raise TrainingError(f"env {self.env_id} returned non-finite {name} (NaN or inf)")
        tensors = [torch.from_numpy(np.ascontiguousarray(c)) for c in columns]
        for i in (0, 2, 6):  # observations, rewards, next_observations as float32
            tensors[i] = tensors[i].float()
        batch = Batch(
            *tensors,
            episode_returns=torch.tensor(self._returns, dtype=torch.float32),
            episode_lengths=torch.tensor(self._lengths, dtype=torch.float32),
        )
        self._returns, self._lengths = [], []
        return batch

    def rollout(self, policy: ActorCritic, n_steps: int) -> Batch:
        """The next ``n_steps`` steps of every env, ``[n_steps, num_envs, ...]``."""
        sample = policy.sampler()
        rows = [self._step(sample) for _ in range(n_steps)]
        return self._batch([np.stack(column) for column in zip(*rows)])

    def episodes(self, policy: ActorCritic, min_episodes: int) -> Batch:
        """Whole episodes, laid end to end as ``[T, 1, ...]``, at least ``min_episodes`` of them.

        With several envs, all episodes that end on the step the count is reached are included,
        and episodes still running carry over to the next batch (dropping them would bias the
        batch towards short episodes).
        """
        sample = policy.sampler()
        finished: list[tuple[int, int, int]] = []  # (env, first row, last row)
        while len(finished) < min_episodes:
            row = self._step(sample)
            self._rows.append(row)
            ended = row[5] & self._autoreset  # real transitions that ended an episode
            if ended.any():
                t = len(self._rows) - 1
                for i in np.flatnonzero(ended):
                    finished.append((int(i), int(self._starts[i]), t))
                    self._starts[i] = t + 1
        columns = [np.stack(column) for column in zip(*self._rows)]
        mask = columns[5]
        pieces = []
        for i, first, last in finished:
            keep = first + np.flatnonzero(mask[first : last + 1, i])  # drop the autoreset row
            pieces.append(keep * self.num_envs + i)
        flat = np.concatenate(pieces)
        episode_columns = [c.reshape(-1, *c.shape[2:])[flat][:, None] for c in columns]
        keep_from = int(self._starts.min())
        self._rows = self._rows[keep_from:]
        self._starts -= keep_from
        return self._batch(episode_columns)

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs beyond the weights: RNG states and the returns window (plain types)."""
        return {
            "seed": self.seed,
            "num_envs": self.num_envs,
            "recent_returns": list(self.recent_returns),
            "rng": self.rng.bit_generator.state,
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
            raise ConfigError(f"checkpoint has {state['num_envs']} envs per process, this run {self.num_envs}")
        self.recent_returns.clear()
        self.recent_returns.extend(state["recent_returns"])
        self.rng.bit_generator.state = state["rng"]
        set_rng_states(self.env, state["env_rng"])
        self._obs, _ = self.env.reset()
        self._autoreset[:] = False
        self._rows, self._starts[:] = [], 0
        self._replay_draw = all(state["autoreset"])

    def close(self) -> None:
        self.env.close()


class EpisodeDataset(IterableDataset):
    """Yields one batch of ``episodes_per_batch`` whole episodes played by ``policy``'s current weights."""

    def __init__(self, collector: Collector, policy: ActorCritic, episodes_per_batch: int = 1):
        self.collector, self.policy, self.episodes_per_batch = collector, policy, episodes_per_batch

    def __iter__(self):
        yield self.collector.episodes(self.policy, self.episodes_per_batch)


class RolloutDataset(IterableDataset):
    """Yields one ``n_steps × num_envs`` rollout played by ``policy``'s current weights."""

    def __init__(self, collector: Collector, policy: ActorCritic, n_steps: int):
        self.collector, self.policy, self.n_steps = collector, policy, n_steps

    def __iter__(self):
        yield self.collector.rollout(self.policy, self.n_steps)
