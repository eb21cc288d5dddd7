"""The algorithms by name, and modules or policies rebuilt from checkpoints.

It sits above the algorithm files (importing them only when asked), so ``pg_lightning``'s
exports, the CLI and export find the algorithms in one place: adding an algorithm is one file in
``modules/``, one line here, one config and one test file.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg_lightning.classpaths import import_class
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


def is_algorithm_path(path: Any) -> bool:
    """Whether ``path`` names a registered algorithm: its module's or a package's re-export of it."""
    module, _, name = str(path).rpartition(".")
    return name in ALGORITHMS and module in (ALGORITHMS[name], "pg_lightning.modules", "pg_lightning")


def algorithm(name: Any, source: str = "") -> type[PolicyGradient]:
    """The class of a registered algorithm, or a ConfigError naming the ones there are."""
    if name not in ALGORITHMS:
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}unknown pg_lightning algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    return getattr(importlib.import_module(ALGORITHMS[name]), name)


def load_module(checkpoint_path: str | Path, *, trusted: bool = False, allow: Collection[str] = (),
                seed_index: int = 0) -> PolicyGradient:
    """The module a pg_lightning checkpoint was saved from, rebuilt on the CPU in eval mode.

    The file is read with ``weights_only=True`` and what its hyperparameters name passes the
    trust boundary (``pg_lightning.trust``: gymnasium's registered envs and data-only wrappers,
    plus the module prefixes or class paths in ``allow``) unless ``trusted=True``, which unpickles
    the whole file and builds whatever it names. The network's size is bounded before it is
    built; the weights and normalisation statistics must then fit it exactly. Of a many-seeds
    checkpoint, seed index ``seed_index`` is loaded, as the one-seed module it is
    (``seed_checkpoints.extract_seed``). Problems raise ``ConfigError``.
    """
    from pg_lightning import checkpoints, trust
    from pg_lightning.envs import probe_spaces
    from pg_lightning.seed_checkpoints import extract_seed, seed_count

    checkpoint = checkpoints.read(checkpoint_path, trusted)
    if seed_count(checkpoint) > 1 or seed_index:  # a one-seed checkpoint is used as read, not copied
        checkpoint = extract_seed(checkpoint, seed_index)
    source = f"checkpoint {str(checkpoint_path)!r}"
    cls = algorithm(checkpoints.entry_of(checkpoint, source).get("algorithm"), source)
    hparams = checkpoints.hyperparameters(checkpoint, source, allow, trusted=trusted)
    spaces = probe_spaces(hparams["env_id"], hparams.get("env_kwargs"), hparams.get("wrappers"))
    trust.check_spaces(hparams, source, *spaces)
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


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the commands that load a checkpoint: what it may run (``trust``) and which
    seed of a many-seeds checkpoint (``--seed-index``)."""
    from pg_lightning import trust

    trust.add_arguments(parser)
    parser.add_argument("--seed-index", type=int, default=0, metavar="K",
                        help="of a many-seeds checkpoint (num_seeds > 1), seed index K: seed + K (default 0)")


def load_policy(checkpoint_path: str | Path, *, trusted: bool = False, allow: Collection[str] = (),
                seed_index: int = 0) -> ActorCritic:
    """The trained policy of a pg_lightning checkpoint, on the CPU in eval mode (see ``load_module``)."""
    return load_module(checkpoint_path, trusted=trusted, allow=allow, seed_index=seed_index).policy.eval()


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
