"""The command line before LightningCLI reads it: which model a command builds, which model
arguments the user gives (and so keeps over a checkpoint's), and ``--ckpt_path`` read and checked
before anything is built from it."""

from __future__ import annotations

from typing import Any

import yaml

from pg_lightning import checkpoints, packaged, registry
from pg_lightning.errors import ConfigError


def is_local_file(path: str | None) -> bool:
    """Whether ``--ckpt_path`` names a file (not Lightning's "last"/"hpc"/"registry" or a URL)."""
    return path is not None and path not in ("last", "hpc", "registry") and "://" not in str(path)


def check_checkpoint(path: str | None, model, restated: set[str]) -> dict[str, Any] | None:
    """A missing, unreadable or foreign ``--ckpt_path`` fails before anything is built or written,
    and so does one whose hyperparameters name code the command line does not restate (see
    ``pg_lightning.trust``); its hyper-parameters and pg_lightning entry if it is a local file."""
    if not is_local_file(path):
        return None
    checkpoint, source = read_checkpoint(path)
    entry = checkpoints.entry_of(checkpoint, source)
    checkpoints.hyperparameters(checkpoint, source, restated=restated)  # before LightningCLI builds the model from them
    env_id = model.init_args.get("env_id") if "env_id" in restated else entry.get("env_id")  # else the checkpoint's is used
    checkpoints.check_identity(entry, str(model.class_path).rpartition(".")[2], env_id)
    class_path = checkpoint["hyper_parameters"].get("_class_path")  # LightningCLI imports and builds the class it names
    if class_path is not None and not registry.is_algorithm_path(class_path):
        raise ConfigError(f"{source}: _class_path {class_path!r} is not a pg_lightning algorithm "
                          f"({', '.join(registry.class_path(name) for name in registry.ALGORITHMS)})")
    return {key: checkpoint[key] for key in ("hyper_parameters", checkpoints.KEY)}  # not its weights


def option_values(args: list[str], *names: str) -> list[str]:
    """The values given to an option of these ``names`` (``--option VALUE`` or ``--option=VALUE``), in order."""
    values = []
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(tuple(f"{name}=" for name in names)):
            values.append(arg.split("=", 1)[1])
    return values


def given_model_arguments(args: list[str]) -> set[str]:
    """The model arguments a command line sets: ``--model.X`` and its ``--config`` files' ``model.init_args``."""
    given = {a.removeprefix("--model.").removeprefix("init_args.").split("=")[0] for a in args
             if a.startswith("--model.")}
    for path in option_values(args, *packaged.CONFIG_OPTIONS):
        with open(path) as f:
            model = (yaml.safe_load(f) or {}).get("model")
        if isinstance(model, dict) and isinstance(model.get("init_args"), dict):
            given |= set(model["init_args"])
    return given


def read_checkpoint(path: str) -> tuple[dict[str, Any], str]:
    """``--ckpt_path`` loaded (one ConfigError line if it cannot be), and how errors name it."""
    return checkpoints.read(path, what="--ckpt_path"), f"--ckpt_path {path!r}"


def with_model(args: list[str]) -> list[str]:
    """``args`` with the model chosen first, so ``--model.*`` arguments may come before ``--model X``.

    Without ``--model X`` or ``--config``, ``validate`` / ``test`` given ``--ckpt_path`` build the
    model the checkpoint describes (its algorithm and hyperparameters), and everything else gets
    the seed's ``Reinforce``. The default is an argument, not a parser default: jsonargparse
    carries a default model's arguments over to another ``--model`` (PPO would get Reinforce's lr).
    """
    subcommand, rest = args[0], args[1:]
    if option_values(rest, *packaged.CONFIG_OPTIONS):
        return args
    choices, others, i = [], [], 0
    while i < len(rest):
        width = 2 if rest[i] == "--model" and i + 1 < len(rest) else 1
        (choices if rest[i] == "--model" or rest[i].startswith("--model=") else others).append(rest[i : i + width])
        i += width
    if not choices:
        choices = [model_of_checkpoint(args) or ["--model", registry.class_path(registry.DEFAULT)]]
    return [subcommand, *choices[-1], *(a for group in others for a in group)]


def model_of_checkpoint(args: list[str]) -> list[str]:
    """``--model`` with the algorithm of ``--ckpt_path``, for validate / test; LightningCLI then
    applies the checkpoint's hyperparameters (checked first by ``check_checkpoint``)."""
    paths = option_values(args, "--ckpt_path")
    if args[0] not in ("validate", "test") or not paths or not is_local_file(paths[-1]):
        return []
    checkpoint, source = read_checkpoint(paths[-1])
    name = checkpoints.entry_of(checkpoint, source).get("algorithm")
    return ["--model", registry.class_path(registry.algorithm(name, source).__name__)]
