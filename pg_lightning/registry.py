"""The algorithms by name, and modules or policies rebuilt from checkpoints.

It sits above the algorithm files (importing them only when asked), so ``pg_lightning``'s
exports, the CLI and export find the algorithms in one place: adding an algorithm is one file in
``modules/``, one line here, one config and one test file.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg_lightning.errors import ConfigError

if TYPE_CHECKING:
    from pg_lightning.modules.base import PolicyGradient
    from pg_lightning.policies import ActorCritic

ALGORITHMS = {
    "Reinforce": "pg_lightning.modules.reinforce",
    "A2C": "pg_lightning.modules.a2c",
    "PPO": "pg_lightning.modules.ppo",
}
DEFAULT = "Reinforce"  # the seed recipe


def class_path(name: str) -> str:
    """``module.Class`` of a registered algorithm, as LightningCLI's ``class_path``."""
    return f"{ALGORITHMS[name]}.{name}"


def import_class(path: str) -> type:
    """The class a ``class_path`` names (``package.module.Class``)."""
    module_name, _, class_name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def algorithm(name: Any, source: str = "") -> type[PolicyGradient]:
    """The class of a registered algorithm, or a ConfigError naming the ones there are."""
    if name not in ALGORITHMS:
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}unknown pg_lightning algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    return getattr(importlib.import_module(ALGORITHMS[name]), name)


def load_module(checkpoint_path: str | Path, *, trusted: bool = False) -> PolicyGradient:
    """The module a pg_lightning checkpoint was saved from, rebuilt on the CPU in eval mode.

    The file is read with ``weights_only=True`` unless ``trusted=True``; its algorithm and
    hyperparameters are checked before the env and network are built; the weights and
    normalisation statistics must then fit the network exactly. Problems raise ``ConfigError``.
    """
    from pg_lightning import checkpoints

    checkpoint = checkpoints.read(checkpoint_path, trusted)
    source = f"checkpoint {str(checkpoint_path)!r}"
    cls = algorithm(checkpoints.entry_of(checkpoint, source).get("algorithm"), source)
    hparams = checkpoints.hyperparameters(checkpoint, source)
    try:
        module = cls(**hparams)
    except TypeError as err:
        raise ConfigError(f"{source}: its hyperparameters do not fit {cls.__name__}: {err}") from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:  # missing, unexpected or mis-shaped weights
        reason = " ".join(str(err).split())
        raise ConfigError(f"{source}: weights do not fit {cls.__name__}: {reason}") from None
    return module.eval()


def load_policy(checkpoint_path: str | Path, *, trusted: bool = False) -> ActorCritic:
    """The trained policy of a pg_lightning checkpoint, on the CPU in eval mode (see ``load_module``)."""
    return load_module(checkpoint_path, trusted=trusted).policy.eval()


def class_spec(spec: Any, what: str) -> tuple[type, dict[str, Any]]:
    """The class and keyword arguments of a config entry ``"pkg.mod.Class"`` or
    ``{"class_path": ..., "init_args": {...}}``, checked against the class's signature;
    a ConfigError (prefixed with ``what``) names the entry and what is wrong."""
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str) or set(spec) - {"class_path", "init_args"}:
        raise ConfigError(f"{what}: expected a class path or {{class_path: ..., init_args: {{...}}}}, got {spec!r}")
    path, kwargs = spec["class_path"], dict(spec.get("init_args") or {})
    try:
        cls = import_class(path)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{what}: cannot import {path!r}: {err}") from None
    try:
        inspect.signature(cls).bind_partial(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{what}: bad init_args {kwargs} for {path}: {err}") from None
    except ValueError:  # no signature to check against (a builtin): the call will tell
        pass
    return cls, kwargs


def model_from_config(path: str, **overrides: Any) -> PolicyGradient:
    """The model a YAML config describes (``model.class_path`` / ``init_args``), with overrides.

    For scripts and tests that want a config's agent without the CLI, e.g.
    ``model_from_config("configs/cartpole_ppo.yaml", seed=3)``. Needs no CLI packages.
    """
    import yaml

    with open(path) as f:
        config = yaml.safe_load(f)
    try:
        model = config["model"]
        cls = import_class(model["class_path"])
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: needs model.class_path (and model.init_args)") from None
    return cls(**{**model.get("init_args", {}), **overrides})
