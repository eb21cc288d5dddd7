"""The rollout collector: plays a policy in a vector env and records its transitions as a ``Batch``.

``Collector.rollout`` gives fixed ``n_steps × num_envs`` rollouts (A2C, PPO), ``Collector.episodes``
whole episodes laid end to end (REINFORCE); with one env (a ``SingleEnv``) episodes are played by a
loop of their own, on the env's own ``step`` and a one-observation actor, with the same batches and
random streams as the general loop.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import numpy as np
import torch

from pg_lightning import observations
from pg_lightning.batch import Batch
from pg_lightning.envs import (
    WRAPPED_STATS,
    SingleEnv,
    Vectorization,
    Wrappers,
    env_action,
    make_vector_env,
    rng_states,
    set_rng_states,
)
from pg_lightning.errors import ConfigError, TrainingError
from pg_lightning.numpy_actor import Sampler
from pg_lightning.policies import ActorCritic


class Step(NamedTuple):
    """One step of every env (arrays over envs), with the fields of ``Batch``."""

    observations: observations.Tree
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    mask: np.ndarray
    next_observations: observations.Tree


class Episodes(NamedTuple):
    """The episodes that ended on one step: which envs' episodes ended, and which envs reported
    episode statistics (the env's own episode, inside any wrappers) with their returns and lengths."""

    ended: np.ndarray
    reported: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray


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
        wrappers: Wrappers = None,
    ):
        self.env = make_vector_env(env_id, num_envs, env_kwargs, vectorization, wrappers)
        self.env_id, self.num_envs, self.seed = env_id, num_envs, seed
        self._to_env = env_action(self.env.single_action_space)
        self.recent_returns: deque[float] = deque(maxlen=window)
        self.rng = np.random.default_rng([seed, 0x5A3])  # not the envs' own streams
        self._obs = observations.flatten(self.env.reset(seed=seed)[0])
        self._fresh = True  # every env is at the start of an episode
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._no_stats = np.zeros(num_envs)
        self._no_reports = np.zeros(num_envs, dtype=bool)

    def _reset(self) -> None:
        """Start a new episode in every env (continuing the envs' random streams)."""
        if not self._fresh:
            self._obs = observations.flatten(self.env.reset()[0])
            self._autoreset[:] = False
            self._fresh = True

    def _step(self, sample: Sampler) -> tuple[Step, Episodes]:
        """One step of every env, and the episodes that ended on it."""
        obs = self._obs
        actions = sample(obs, self.rng)
        env_actions = self._to_env(actions)
        try:
            next_obs, rewards, terminated, truncated, info = self.env.step(env_actions)
        except Exception as err:
            raise self._env_failed(err) from err
        next_obs = observations.flatten(next_obs)
        # a user's vector env may give integer flags: ~ and & need bools (no copy for bool arrays)
        terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        mask = ~self._autoreset
        self._autoreset = terminated | truncated
        self._obs, self._fresh = next_obs, False
        ended = mask & self._autoreset
        return Step(obs, actions, rewards, terminated, truncated, mask, next_obs), self._episodes(ended, info)

    def _env_failed(self, err: Exception) -> TrainingError:
        """An env bug must name the env, not surface as a loop traceback."""
        return TrainingError(f"env {self.env_id} raised in step(): {type(err).__name__}: {err}")

    def _episodes(self, ended: np.ndarray, info: dict[str, Any]) -> Episodes:
        """The episode statistics of one step: the env's own (``RecordEpisodeStatistics`` inside any
        wrappers), or, for episodes a wrapper ended first, the env's return and length up to the
        cut (``envs.WrapperEndedEpisodes``): every return is on the env's own reward scale."""
        if "episode" not in info and WRAPPED_STATS not in info:
            return Episodes(ended, self._no_reports, self._no_stats, self._no_stats)
        own = info.get("_episode", self._no_reports)
        returns = info["episode"]["r"] if "episode" in info else self._no_stats
        lengths = info["episode"]["l"] if "episode" in info else self._no_stats
        if WRAPPED_STATS in info:
            cut = info[f"_{WRAPPED_STATS}"] & ~own
            returns = np.where(cut, info[WRAPPED_STATS]["r"], returns)
            lengths = np.where(cut, info[WRAPPED_STATS]["l"], lengths)
            own = own | cut
        return Episodes(ended, own, returns, lengths)

    def _batch(self, step: Step, returns: list[float], lengths: list[int], discarded_steps: int = 0) -> Batch:
        for name, column in step._asdict().items():
            if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in observations.leaves(column)):
                raise TrainingError(f"env {self.env_id} returned non-finite {name} (NaN or inf)")
        step = step._replace(rewards=step.rewards.astype(np.float32))
        tensors = {name: observations.apply(_to_tensor, c) for name, c in step._asdict().items()}
        for name in ("observations", "next_observations"):  # float64 observations as float32; others keep their dtype
            tensors[name] = observations.apply(lambda t: t.float() if t.dtype == torch.float64 else t, tensors[name])
        self.recent_returns.extend(returns)
        return Batch(
            **tensors,
            episode_returns=torch.tensor(returns, dtype=torch.float32),
            episode_lengths=torch.tensor(lengths, dtype=torch.float32),
            discarded_steps=discarded_steps,
        )

    def rollout(self, policy: ActorCritic, n_steps: int) -> Batch:
        """The next ``n_steps`` steps of every env, ``[n_steps, num_envs, ...]``; episodes run on
        across rollouts (their value is bootstrapped at the rollout's end)."""
        sample = policy.sampler()
        returns: list[float] = []
        lengths: list[int] = []
        steps = []
        for _ in range(n_steps):
            step, episodes = self._step(sample)
            steps.append(step)
            returns += episodes.returns[episodes.reported].tolist()
            lengths += episodes.lengths[episodes.reported].tolist()
        return self._batch(Step(*(observations.stack(column) for column in zip(*steps))), returns, lengths)

    def episodes(self, policy: ActorCritic, num_episodes: int) -> Batch:
        """Exactly ``num_episodes`` whole episodes, laid end to end as ``[T, 1, ...]``, in the
        order they ended.

        Every env starts a new episode at the batch's start, so every step is played by the
        current weights. Envs start episodes for the batch until ``num_episodes`` have been
        started, and the batch closes when all of them have ended. Which episodes belong to the
        batch is decided when they start, never by how long they last, so the batch is not biased
        towards short episodes; the steps of episodes started after that are discarded (and
        counted in ``discarded_steps``).
        """
        self._reset()
        if isinstance(self.env, SingleEnv):
            return self._one_env_episodes(policy, num_episodes)
        sample = policy.sampler()
        owned = np.arange(self.num_envs) < num_episodes  # env i plays an episode of this batch
        started = int(owned.sum())
        steps, pieces = [], []
        starts = np.zeros(self.num_envs, dtype=np.int64)  # where each env's episode starts in steps
        returns: list[float] = []
        lengths: list[int] = []
        while len(pieces) < num_episodes:
            step, episodes = self._step(sample)
            t = len(steps)
            steps.append(step)
            for i in np.flatnonzero(episodes.ended & owned):
                first = starts[i] + (not steps[starts[i]].mask[i])  # past the autoreset step
                pieces.append(np.arange(first, t + 1) * self.num_envs + i)
                if episodes.reported[i]:
                    returns.append(float(episodes.returns[i]))
                    lengths.append(int(episodes.lengths[i]))
                owned[i] = started < num_episodes
                started += int(owned[i])
            starts[episodes.ended] = t + 1
        flat = np.concatenate(pieces)
        real = int(np.stack([step.mask for step in steps]).sum())

        def select(a: np.ndarray) -> np.ndarray:  # [T, N, ...] -> [len(flat), 1, ...]
            return a.reshape(-1, *a.shape[2:])[flat][:, None]

        columns = Step(*(observations.apply(select, observations.stack(c)) for c in zip(*steps)))
        return self._batch(columns, returns, lengths, discarded_steps=real - len(flat))

    def _one_env_episodes(self, policy: ActorCritic, num_episodes: int) -> Batch:
        """``episodes`` with one env (a ``SingleEnv``): the same batch and random streams as the
        general loop (tested), but each step is the env's own ``step`` and a one-observation
        actor, without the vector API's per-step arrays: one env's episodes are consecutive,
        every step is in the batch."""
        env, to_env, single_action = self.env.env, self._to_env, self.env.single_action
        sample, close = policy.one_env_sampler(self.rng)
        obs = observations.apply(lambda a: a[0], self._obs)
        seen, actions, rewards, ends, returns, lengths = [], [], [], [], [], []
        try:
            for episode in range(num_episodes):
                if episode:  # the autoreset step between episodes, where the general loop draws an action too
                    sample(obs)
                    obs = env.reset()[0]
                first = len(rewards)
                while True:
                    seen.append(obs)
                    action = sample(obs)
                    actions.append(action)
                    try:
                        obs, reward, terminated, truncated, _ = env.step(single_action(to_env(action)))
                    except Exception as err:
                        raise self._env_failed(err) from err
                    rewards.append(reward)
                    if terminated or truncated:
                        terminated, truncated = bool(terminated), bool(truncated)  # numpy ints are legal flags
                        break
                seen.append(obs)  # the final observation: next_observations' last
                ends.append((len(rewards), terminated, truncated))
                episode_return = 0.0
                for reward in rewards[first:]:
                    episode_return += float(reward)
                returns.append(episode_return)
                lengths.append(len(rewards) - first)
        finally:
            close()
        self.env.episode_ended()
        self._obs, self._fresh, self._autoreset = observations.batch_of_one(obs), False, np.ones(1, dtype=bool)
        steps = len(rewards)
        terminated_, truncated_ = np.zeros((steps, 1), dtype=bool), np.zeros((steps, 1), dtype=bool)
        for end, term, trunc in ends:
            terminated_[end - 1], truncated_[end - 1] = term, trunc
        # seen holds each episode's observations and its final one: T + 1 entries per episode
        index = np.arange(steps) + np.repeat(np.arange(len(ends)), lengths)
        stacked = observations.stack(seen if isinstance(obs, np.ndarray) else [observations.flatten(o) for o in seen])
        step = Step(
            observations.apply(lambda a: a[index, None], stacked), np.array(actions)[:, None],
            np.array(rewards, dtype=np.float64)[:, None], terminated_, truncated_, np.ones((steps, 1), dtype=bool),
            observations.apply(lambda a: a[index + 1, None], stacked),
        )
        return self._batch(step, returns, lengths)

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs beyond the weights: RNG states and the returns window (plain types)."""
        return {
            "seed": self.seed,
            "num_envs": self.num_envs,
            "recent_returns": list(self.recent_returns),
            "rng": self.rng.bit_generator.state,
            "env_rng": rng_states(self.env),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved state into a collector built with the same settings.

        Every env starts a new episode from its restored generator, as an episode batch does
        after the one the state was saved behind: resumed episode batches equal the
        uninterrupted ones. Rollouts restart the episodes that were in progress.
        """
        if state["num_envs"] != self.num_envs:
            raise ConfigError(f"checkpoint has {state['num_envs']} envs per process, this run {self.num_envs}")
        self.recent_returns.clear()
        self.recent_returns.extend(state["recent_returns"])
        self.rng.bit_generator.state = state["rng"]
        set_rng_states(self.env, state["env_rng"])
        self._fresh = False
        self._reset()

    def close(self) -> None:
        self.env.close()


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing a C-contiguous array's memory (a copy only for a non-contiguous one)."""
    return torch.from_numpy(np.ascontiguousarray(a))
