"""``train.py``'s command line: LightningCLI with RL defaults, ``fit`` when no subcommand is given."""

from __future__ import annotations

import os
import sys
import zipfile
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from pg_lightning.callbacks import StopWhenSolved
from pg_lightning.errors import ConfigError, TrainingError
from pg_lightning.modules import PolicyGradient, check_checkpoint_matches

SUBCOMMANDS = ("fit", "validate", "test", "predict")

DEFAULTS = {
    "model": {"class_path": "pg_lightning.modules.Reinforce"},
    "trainer.max_epochs": -1,  # one epoch is one update; the env-step budget or StopWhenSolved ends it
    "trainer.log_every_n_steps": 10,
    "trainer.logger": {"class_path": "pg_lightning.loggers.WandbLogger"},
    "trainer.callbacks": [{"class_path": "pg_lightning.callbacks.EnvStepProgressBar"}],
    "checkpoint.monitor": "train/return_last100",
    "checkpoint.mode": "max",
    "checkpoint.save_last": True,
    "checkpoint.every_n_epochs": 25,
    "checkpoint.filename": "best",
}


class CLI(LightningCLI):
    """LightningCLI over the pg_lightning modules; the default model is the seed's ``Reinforce``.

    Besides ``model`` and ``trainer`` it has the groups ``solved`` (StopWhenSolved, e.g.
    ``--solved.threshold -80``), ``checkpoint`` (ModelCheckpoint) and ``torch_threads``, so a
    config can set them without restating ``trainer.callbacks``.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(StopWhenSolved, "solved")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_argument("--torch_threads", type=int, default=1,
                            help="torch CPU threads; 1 is fastest for small networks on a shared CPU")
        parser.set_defaults(DEFAULTS)

    def _config(self):
        """This run's config (the subcommand's, when there are subcommands)."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def parse_arguments(self, parser, args) -> None:
        # ``main`` always passes the argument list (with ``fit`` inserted); no warning about it.
        self.config = parser.parse_args(args)
        config = self._config()
        _check_checkpoint(config.get("ckpt_path"), config.model)  # before Lightning reads it

    def before_instantiate_classes(self) -> None:
        config = self._config()
        torch.set_num_threads(config.torch_threads)
        if config.get("weights_only", False) is None:
            config.weights_only = True  # pg_lightning checkpoints hold only tensors and plain data
        trainer = config.trainer
        if trainer.enable_progress_bar is False and trainer.callbacks:  # the bar is a callback here
            trainer.callbacks = [c for c in trainer.callbacks if not c.class_path.endswith("ProgressBar")]


def _check_checkpoint(path: str | None, model) -> None:
    """A missing, unreadable or foreign ``--ckpt_path`` fails before anything is built or written."""
    if path is None or path in ("last", "hpc", "registry") or "://" in str(path):
        return
    if not os.path.isfile(path):
        raise ConfigError(f"--ckpt_path {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"--ckpt_path {path!r} is not a torch checkpoint (corrupt or truncated?)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True).get("pg_lightning")
    except Exception as err:
        raise ConfigError(f"--ckpt_path {path!r} cannot be read: {type(err).__name__}: {err}") from None
    if saved is None:
        raise ConfigError(f"--ckpt_path {path!r} is not a pg_lightning checkpoint")
    check_checkpoint_matches(saved, str(model.class_path).rpartition(".")[2], model.init_args.get("env_id"))


def _config_error(err: BaseException) -> ConfigError | None:
    """The ConfigError behind ``err``, which jsonargparse wraps in its own ValueError."""
    while err is not None:
        if isinstance(err, ConfigError):
            return err
        err = err.__cause__ or err.__context__
    return None


def main(args: list[str] | None = None) -> CLI:
    """Run the CLI on ``args`` (default: the command line); ``fit`` is implied when the first
    argument is not a subcommand. Bad settings exit with status 2 and a one-line message."""
    args = list(sys.argv[1:] if args is None else args)
    if not args or args[0] not in SUBCOMMANDS:
        args = ["fit", *args]
    try:
        return CLI(
            PolicyGradient,
            subclass_mode_model=True,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except ValueError as err:
        config_error = _config_error(err)
        if config_error is None:
            raise
        print(f"error: {config_error}", file=sys.stderr)
        raise SystemExit(2) from None


def model_from_config(path: str, **overrides: Any) -> PolicyGradient:
    """The model a YAML config describes (``model.class_path`` / ``init_args``), with overrides.

    For scripts and tests that want a config's agent without the CLI, e.g.
    ``model_from_config("configs/cartpole_ppo.yaml", seed=3)``.
    """
    import importlib

    import yaml

    with open(path) as f:
        config = yaml.safe_load(f)
    try:
        model = config["model"]
        module_name, _, class_name = model["class_path"].rpartition(".")
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: needs model.class_path (and model.init_args)") from None
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**{**model.get("init_args", {}), **overrides})
