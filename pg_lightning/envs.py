"""Environment construction: validated ids, wrappers from configs, vector envs, episode statistics, RNG state."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics
from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorRecordEpisodeStatistics

from pg_lightning import observations
from pg_lightning.classpaths import class_spec
from pg_lightning.errors import ConfigError

Vectorization = Literal["auto", "vector_entry_point", "sync", "async"]
WRAPPED_STATS = "wrapped_episode"  # the info key of episode statistics taken outside the wrappers
Wrappers = list[str | dict[str, Any]] | None  # class paths or {class_path, init_args}


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or a ConfigError that says what is wrong.

    ``module:EnvName-vN`` (gymnasium's import form) imports ``module`` first, which registers
    the env, as ``gymnasium.make`` does; every later ``make`` takes the same id.
    """
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"env_id {env_id!r}: cannot import module {module!r}: {err}") from None
    try:
        return gym.spec(name)
    except gym.error.Error as err:
        raise ConfigError(f"unknown env_id {env_id!r}: {err}") from None


def wrapper_factories(wrappers: Wrappers) -> list[Callable[[gym.Env], gym.Env]]:
    """``wrappers`` (class paths, or ``{class_path, init_args}`` entries) as callables that wrap an env."""
    factories = []
    for spec in wrappers or ():
        cls, kwargs = class_spec(spec, "wrappers")
        factories.append(functools.partial(cls, **kwargs))
    return factories


def make_env(
    env_id: str, env_kwargs: dict[str, Any] | None = None, wrappers: Wrappers = None,
    inner: Sequence[Callable[[gym.Env], gym.Env]] = (), **make_kwargs: Any,
) -> gym.Env:
    """One env: ``gymnasium.make`` (``make_kwargs`` over ``env_kwargs``), episode statistics,
    the ``inner`` wrappers (e.g. video recording), then ``wrappers`` in order.

    ``RecordEpisodeStatistics`` sits inside the wrappers, as in CleanRL and SB3's Monitor: the
    returns reported are the env's own (a reward-clipping wrapper does not change them). With
    wrappers, ``WrapperEndedEpisodes`` outside them (``WRAPPED_STATS``) reports the episodes a
    wrapper ends before the env does (e.g. a ``TimeLimit`` wrapper), on the env's scale too.
    """
    env = gym.make(env_id, **{**(env_kwargs or {}), **make_kwargs})
    for wrap in wrapper_chain(wrappers, inner):
        env = wrap(env)
    return env


def wrapper_chain(wrappers: Wrappers, inner: Sequence[Callable[[gym.Env], gym.Env]] = ()) -> list[Callable[[gym.Env], gym.Env]]:
    """What wraps every env, innermost first: the env's own episode statistics, ``inner``, the
    config's ``wrappers`` and, when there are any, the statistics of episodes they end."""
    factories = [_without_duplicate_stats(wrap) for wrap in wrapper_factories(wrappers)]
    outer = [WrapperEndedEpisodes] if factories else []
    return [RecordEpisodeStatistics, *inner, *factories, *outer]


def _without_duplicate_stats(wrap: Callable[[gym.Env], gym.Env]) -> Callable[[gym.Env], gym.Env]:
    """``wrap``, except that a ``RecordEpisodeStatistics`` it makes under a key the chain records
    already (``wrappers: [gymnasium.wrappers.RecordEpisodeStatistics]``, a CleanRL habit) is left
    out: it would assert at the first episode end, and the chain records those statistics itself."""

    def wrap_once(env: gym.Env) -> gym.Env:
        wrapped = wrap(env)
        duplicate = isinstance(wrapped, RecordEpisodeStatistics) and wrapped is not env and (
            getattr(wrapped, "_stats_key", "episode") in ("episode", WRAPPED_STATS))
        return wrapped.env if duplicate else wrapped

    return wrap_once


class WrapperEndedEpisodes(gym.Wrapper):
    """Outside the config's wrappers: when a wrapper ends an episode the env has not ended (a
    ``TimeLimit`` wrapper, a life-loss signal), ``info[WRAPPED_STATS]`` holds its return and
    length on the env's own scale, as the innermost ``RecordEpisodeStatistics`` counted them
    since the env's last reset, so that every reported return is the env's, whatever the
    wrappers do to the rewards (clipping, scaling). Episodes the env ends are reported by
    ``info["episode"]`` alone."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.own = _innermost_statistics(env)

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and "episode" not in info:
            info[WRAPPED_STATS] = {"r": self.own.episode_returns, "l": self.own.episode_lengths}
        return obs, reward, terminated, truncated, info


def _innermost_statistics(env: gym.Env) -> RecordEpisodeStatistics:
    """The ``RecordEpisodeStatistics`` closest to the env in ``env``'s wrappers (the env's own returns)."""
    found = None
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RecordEpisodeStatistics):
            found = env
        env = env.env
    if found is None:
        raise ValueError("WrapperEndedEpisodes needs a RecordEpisodeStatistics inside the wrappers")
    return found


def probe_spaces(
    env_id: str, env_kwargs: dict[str, Any] | None = None, wrappers: Wrappers = None,
) -> tuple[gym.Space, gym.Space]:
    """Build one env to read its observation and action spaces (and fail early on bad kwargs or wrappers)."""
    env_spec(env_id)
    factories = wrapper_factories(wrappers)  # import and signature errors first
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(f"env_id {env_id!r} needs an extra dependency: {err}") from None
    except TypeError as err:
        raise ConfigError(f"bad env_kwargs {env_kwargs!r} for {env_id!r}: {err}") from None
    try:
        for spec, wrap in zip(wrappers or (), factories):
            try:
                env = wrap(env)
            except Exception as err:
                raise ConfigError(f"wrappers: {spec} failed on {env_id}: {type(err).__name__}: {err}") from None
        return env.observation_space, env.action_space
    finally:
        env.close()


def make_vector_env(
    env_id: str,
    num_envs: int,
    env_kwargs: dict[str, Any] | None = None,
    vectorization: Vectorization = "auto",
    wrappers: Wrappers = None,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` behind gymnasium's vector API, recording episode stats.

    ``auto`` uses ``SingleEnv`` for one env without wrappers; the env's own vectorised
    implementation (``vector_entry_point``, e.g. CartPole's numpy version) when it has one, there
    are at least 4 envs (below that a synchronous vector env is faster) and no wrappers (a native
    vector env has no per-env wrappers); a synchronous one otherwise. Autoreset is gymnasium's default
    next-step mode: the step after an episode ends is a reset, not a transition. Episode
    statistics come from ``RecordEpisodeStatistics``, inside each sub-env's wrappers (see
    ``make_env``), or on the vector env when it is natively vectorised.
    """
    spec = env_spec(env_id)
    if vectorization == "auto" and num_envs == 1 and not wrappers:
        return SingleEnv(gym.make(env_id, **(env_kwargs or {})))
    if vectorization == "auto":
        native = spec.vector_entry_point is not None and num_envs >= 4 and not wrappers
        vectorization = "vector_entry_point" if native else "sync"
    if vectorization == "vector_entry_point":
        if wrappers:
            raise ConfigError("wrappers need vectorization 'sync' or 'async' (a native vector env has no per-env wrappers)")
        env = gym.make_vec(env_id, num_envs, vectorization_mode=vectorization, **(env_kwargs or {}))
        return VectorRecordEpisodeStatistics(env)
    return gym.make_vec(
        env_id, num_envs, vectorization_mode=vectorization, wrappers=wrapper_chain(wrappers), **(env_kwargs or {}),
    )


def env_action(action_space: gym.Space) -> Callable[[np.ndarray], np.ndarray]:
    """What the env is given for a policy's action (or a batch of them): clipped to the bounds of
    a Box space, else as it is (discrete actions leave the policy as the space's values, ``start``
    included: see ``distributions.CategoricalHead``)."""
    if isinstance(action_space, gym.spaces.Box):
        return lambda action: np.clip(action, action_space.low, action_space.high)
    return lambda action: action


class SingleEnv(gym.vector.VectorEnv):
    """One env behind the vector API without a vector env's per-step bookkeeping, with the same
    semantics as a one-env ``SyncVectorEnv`` with ``RecordEpisodeStatistics``: next-step autoreset
    (the step after an episode ends is a reset: reward 0, neither terminated nor truncated),
    ``info["episode"]`` / ``info["_episode"]`` when an episode ends, arrays with a leading axis of 1.
    ``benchmarks/throughput.py`` measures it against the one-env ``SyncVectorEnv``."""

    def __init__(self, env: gym.Env):
        self.env, self.envs, self.num_envs = env, [env], 1  # envs: where rng_states finds the generator
        self.single_observation_space, self.single_action_space = env.observation_space, env.action_space
        self.observation_space = gym.vector.utils.batch_space(env.observation_space, 1)
        self.action_space = gym.vector.utils.batch_space(env.action_space, 1)
        self.metadata = env.metadata
        self._autoreset, self._return, self._length = False, 0.0, 0
        # a Python int passes Discrete.contains (checked by many envs' step) ~5x faster than a numpy integer
        self._action = int if isinstance(env.action_space, gym.spaces.Discrete) else (lambda a: a)

    def single_action(self, action: Any) -> Any:
        """What the env takes for one action of the pipeline (a Python int for ``Discrete``)."""
        return self._action(action)

    def episode_ended(self) -> None:
        """An episode played on ``self.env`` directly (see ``Collector.episodes``) has ended: the
        next ``step`` is its autoreset."""
        self._autoreset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._autoreset, self._return, self._length = False, 0.0, 0
        return observations.batch_of_one(obs), info

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._autoreset:
            obs, _ = self.reset()
            return obs, np.zeros(1), np.zeros(1, dtype=bool), np.zeros(1, dtype=bool), {}
        obs, reward, terminated, truncated, _ = self.env.step(self.single_action(actions[0]))
        terminated, truncated = bool(terminated), bool(truncated)  # numpy ints are legal flags; masks need bools
        self._return += float(reward)
        self._length += 1
        info: dict[str, Any] = {}
        if terminated or truncated:
            self._autoreset = True
            info = {"episode": {"r": np.array([self._return]), "l": np.array([self._length])},
                    "_episode": np.ones(1, dtype=bool)}
        return observations.batch_of_one(obs), np.array([reward], dtype=np.float64), np.array([terminated]), np.array([truncated]), info

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()


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
