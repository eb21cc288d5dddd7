"""Environment construction: validated ids, vector envs, episode statistics, RNG state."""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics
from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorRecordEpisodeStatistics

from pg_lightning.errors import ConfigError

Vectorization = Literal["auto", "vector_entry_point", "sync", "async"]


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or a ValueError that says what is wrong."""
    try:
        return gym.spec(env_id)
    except gym.error.Error as err:
        raise ConfigError(f"unknown env_id {env_id!r}: {err}") from None


def probe_spaces(env_id: str, env_kwargs: dict[str, Any]) -> tuple[gym.Space, gym.Space]:
    """Build one env to read its observation and action spaces (and fail early on bad kwargs)."""
    env_spec(env_id)
    try:
        env = gym.make(env_id, **env_kwargs)
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(f"env_id {env_id!r} needs an extra dependency: {err}") from None
    except TypeError as err:
        raise ConfigError(f"bad env_kwargs {env_kwargs!r} for {env_id!r}: {err}") from None
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def make_vector_env(
    env_id: str,
    num_envs: int,
    env_kwargs: dict[str, Any] | None = None,
    vectorization: Vectorization = "auto",
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` behind gymnasium's vector API, recording episode stats.

    ``auto`` uses the env's own vectorised implementation (``vector_entry_point``, e.g. CartPole's
    numpy version) when it has one and there are at least 4 envs (below that a synchronous
    vector env is faster: 24 vs 43 µs per step for one CartPole), a synchronous one otherwise.
    Autoreset is gymnasium's default next-step mode: the step after an episode ends is a reset,
    not a transition. Episode statistics come from ``RecordEpisodeStatistics``, on each sub-env
    (cheaper) or on the vector env when it is natively vectorised.
    """
    spec = env_spec(env_id)
    if vectorization == "auto":
        native = spec.vector_entry_point is not None and num_envs >= 4
        vectorization = "vector_entry_point" if native else "sync"
    if vectorization == "vector_entry_point":
        env = gym.make_vec(env_id, num_envs, vectorization_mode=vectorization, **(env_kwargs or {}))
        return VectorRecordEpisodeStatistics(env)
    return gym.make_vec(
        env_id, num_envs, vectorization_mode=vectorization, wrappers=[RecordEpisodeStatistics],
        **(env_kwargs or {}),
    )


def _generators(env: gym.vector.VectorEnv) -> list[np.random.Generator]:
    base = env.unwrapped
    if hasattr(base, "envs"):  # SyncVectorEnv: one generator per sub-env
        return [sub.unwrapped.np_random for sub in base.envs]
    if hasattr(base, "get_attr"):  # AsyncVectorEnv: generators live in the workers
        return list(base.get_attr("np_random"))
    return [base.np_random]  # a natively vectorised env has one generator


def rng_states(env: gym.vector.VectorEnv) -> list[dict[str, Any]]:
    """The bit-generator states of the env's random generators (for exact resume)."""
    return [g.bit_generator.state for g in _generators(env)]


def set_rng_states(env: gym.vector.VectorEnv, states: list[dict[str, Any]]) -> None:
    """Restore what ``rng_states`` returned, for an env built with the same settings."""
    base = env.unwrapped
    if hasattr(base, "envs") or not hasattr(base, "get_attr"):
        generators = _generators(env)
        if len(generators) != len(states):
            raise ConfigError(f"env has {len(generators)} generators, state has {len(states)}")
        for generator, state in zip(generators, states):
            generator.bit_generator.state = state
        return
    generators = []
    for state in states:
        generator = np.random.Generator(np.random.PCG64())
        generator.bit_generator.state = state
        generators.append(generator)
    base.set_attr("np_random", generators)
