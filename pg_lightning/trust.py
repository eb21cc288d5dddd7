"""The trust boundary: what a checkpoint, or any file someone else made, may name.

A checkpoint is data, read with ``weights_only=True``; but its hyperparameters name envs,
wrappers and networks that building the module would import and construct. Without trust,
nothing it names runs unless the user allowed it:

- ``env_id``: an id gymnasium has registered (by code the user ran). The import form
  ``module:Env-vN`` only for the env packages pg_lightning ships configs for (``ENV_MODULES``).
- ``wrappers``: gymnasium's own wrappers whose arguments are plain data (``SAFE_WRAPPERS``; not
  one that writes files, such as ``RecordVideo``, nor one that takes a function).
- ``network``: none (the default encoder).
- ``env_kwargs`` and every ``init_args``: plain data (numbers, strings, lists, dicts).
- the network's size: its parameter count from the hyperparameters is bounded before anything is
  built (``MAX_PARAMETERS``).

The user allows more by restating the field (``train.py --model.X`` or ``--config``), by
``allow=[...]`` (``load_module`` / ``load_policy``; module prefixes or class paths) or ``--allow``
(``play``, ``export``); ``trusted=True`` (``--trust-checkpoint``) trusts the whole file.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Sequence
from typing import Any

import gymnasium as gym

from pg_lightning.classpaths import split_spec
from pg_lightning.errors import ConfigError

ENV_MODULES = ("ale_py", "pg_lightning.games")  # importing them only registers envs
SAFE_WRAPPERS = frozenset({
    "AtariPreprocessing", "ClipAction", "ClipReward", "DelayObservation", "DtypeObservation", "FilterObservation",
    "FlattenObservation", "FrameStackObservation", "GrayscaleObservation", "MaxAndSkipObservation",
    "NormalizeObservation", "NormalizeReward", "RecordEpisodeStatistics", "RescaleAction", "RescaleObservation",
    "ReshapeObservation", "ResizeObservation", "StickyAction", "TimeAwareObservation", "TimeLimit",
})
MAX_LAYER_WIDTH = 1 << 16
MAX_ENVS = 1 << 14
MAX_PARAMETERS = 1 << 28  # 1 GiB of float32 weights
HOW = ("if you trust it, restate it (train.py: --model.{field} or --config), pass allow=[{name!r}] "
       "(load_module) or --allow {name} (play, export), or trust the whole file (--trust-checkpoint)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint`` and ``--allow NAME``, for the commands that read checkpoints."""
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load with weights_only=False and build whatever the checkpoint names "
                             "(full unpickling, which can run code): only for files you trust")
    parser.add_argument("--allow", action="append", default=[], metavar="NAME",
                        help="a module or class path the checkpoint may import and build (its env module, "
                             "wrappers or network); repeatable")


def is_allowed(name: str, allow: Collection[str]) -> bool:
    """Whether ``name`` (a module or class path) is in ``allow`` or inside a module listed there."""
    return any(name == a or name.startswith(f"{a}.") for a in allow)


def is_plain(value: Any) -> bool:
    """Whether ``value`` is plain data: None, numbers, strings, and lists / dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def _refuse(source: str, field: str, what: str, name: str) -> ConfigError:
    return ConfigError(f"{source}: {field} {what}; {HOW.format(field=field, name=name)}")


def check_env_id(env_id: Any, source: str, allow: Collection[str]) -> None:
    """A registered gymnasium id, or the import form of an allowed module."""
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"{source}: env_id must be a gymnasium id, got {env_id!r}")
    module, _, name = env_id.rpartition(":")
    if module:
        if not (module in ENV_MODULES or is_allowed(module, allow)):
            raise _refuse(source, "env_id", f"{env_id!r} imports module {module!r}", module)
    elif name not in gym.registry:
        raise ConfigError(f"{source}: unknown env_id {env_id!r} (not registered with gymnasium)")


def check_wrapper(spec: Any, source: str, allow: Collection[str]) -> None:
    """One ``wrappers`` entry: a safe gymnasium wrapper or an allowed class, with plain arguments."""
    path, kwargs = split_spec(spec, f"{source}: wrappers")
    module, _, name = path.rpartition(".")
    gymnasium_own = (module == "gymnasium.wrappers" or module.startswith("gymnasium.wrappers.")) and name in SAFE_WRAPPERS
    if not (gymnasium_own or is_allowed(path, allow)):
        raise _refuse(source, "wrappers", f"name {path!r}, which is not one of gymnasium's data-only wrappers", path)
    if not is_plain(kwargs):
        raise ConfigError(f"{source}: wrappers: {path}'s init_args must be plain data, got {kwargs!r}")


def check_names(hparams: dict[str, Any], source: str, allow: Collection[str] = (),
                restated: Collection[str] = ()) -> None:
    """A one-line ConfigError for the first thing ``hparams`` names that would run code the user
    did not allow; ``restated``: fields the user gives again (their values replace these)."""
    if "env_id" not in restated:
        check_env_id(hparams.get("env_id"), source, allow)
    if "env_kwargs" not in restated and not is_plain(hparams.get("env_kwargs")):
        raise ConfigError(f"{source}: env_kwargs must be plain data, got {hparams.get('env_kwargs')!r}")
    if "wrappers" not in restated:
        wrappers = hparams.get("wrappers") or []
        if not isinstance(wrappers, list):
            raise ConfigError(f"{source}: wrappers must be a list, got {wrappers!r}")
        for spec in wrappers:
            check_wrapper(spec, source, allow)
    network = hparams.get("network")
    if "network" not in restated and network is not None:
        path, kwargs = split_spec(network, f"{source}: network")
        if not is_allowed(path, allow):
            raise _refuse(source, "network", f"names the class {path!r}", path)
        if not is_plain(kwargs):
            raise ConfigError(f"{source}: network: {path}'s init_args must be plain data, got {kwargs!r}")
    check_sizes(hparams, source)


def layer_parameters(sizes: Sequence[int]) -> int:
    """Weights and biases of dense layers through ``sizes`` (``[in, hidden..., out]``)."""
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


def check_sizes(hparams: dict[str, Any], source: str, inputs: int = 1, outputs: int = 1) -> None:
    """Widths, env count and the MLP's parameter count (its hidden layers; with ``inputs`` and
    ``outputs``, the input and output layers too; twice for a separate critic) within bounds."""
    widths = hparams.get("hidden_sizes", ())
    if not (isinstance(widths, (list, tuple)) and all(isinstance(w, int) and 0 < w <= MAX_LAYER_WIDTH for w in widths)):
        raise ConfigError(f"{source}: hidden_sizes must be integers in [1, {MAX_LAYER_WIDTH}], got {widths!r}")
    num_envs = hparams.get("num_envs", 1)
    if not (isinstance(num_envs, int) and 0 < num_envs <= MAX_ENVS):
        raise ConfigError(f"{source}: num_envs must be an integer in [1, {MAX_ENVS}], got {num_envs!r}")
    copies = 2 if hparams.get("critic") == "separate" or hparams.get("baseline") == "value" else 1
    size = copies * layer_parameters([inputs, *widths, outputs])
    if size > MAX_PARAMETERS:
        raise ConfigError(f"{source}: hidden_sizes {list(widths)} make a network of {size:,} parameters, "
                          f"more than {MAX_PARAMETERS:,}")


def check_spaces(hparams: dict[str, Any], source: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """``check_sizes`` with the env's input and output layers, once its spaces are known."""
    check_sizes(hparams, source, gym.spaces.flatdim(observation_space), gym.spaces.flatdim(action_space))
