"""``train.py``'s command line: LightningCLI with RL defaults, ``fit`` when no subcommand is given."""

from __future__ import annotations

import sys
from typing import Any

import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pg_lightning import checkpoints, registry
from pg_lightning.callbacks import RunCheckpoint, StopWhenSolved
from pg_lightning.errors import ConfigError, TrainingError
from pg_lightning.modules import PolicyGradient
from pg_lightning.trainer_checks import check_trainer

SUBCOMMANDS = ("fit", "validate", "test", "predict")

DEFAULTS = {
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
    ``--solved.threshold -80``), ``checkpoint`` (RunCheckpoint: a ModelCheckpoint that also
    saves the end of every run) and ``torch_threads``, so a config can set them without
    restating ``trainer.callbacks``.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(StopWhenSolved, "solved")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
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
        if trainer.enable_checkpointing is False:  # the checkpoint group is a callback too: make it save nothing
            trainer.enable_checkpointing = None
            config.checkpoint.save_top_k, config.checkpoint.save_last = 0, False

    def before_fit(self) -> None:
        """Refuse what cannot work before the config, W&B run or checkpoints are written."""
        check_trainer(self.trainer, self.model)
        if self._config().get("lr_scheduler") is not None and self.model.hparams.anneal_lr:
            raise ConfigError("anneal_lr and --lr_scheduler both set the learning rate; choose one")


def _is_local_file(path: str | None) -> bool:
    """Whether ``--ckpt_path`` names a file (not Lightning's "last"/"hpc"/"registry" or a URL)."""
    return path is not None and path not in ("last", "hpc", "registry") and "://" not in str(path)


def _check_checkpoint(path: str | None, model) -> None:
    """A missing, unreadable or foreign ``--ckpt_path`` fails before anything is built or written."""
    if _is_local_file(path):
        checkpoint, source = _read_checkpoint(path)
        checkpoints.check_identity(checkpoints.entry_of(checkpoint, source), str(model.class_path).rpartition(".")[2],
                                   model.init_args.get("env_id"))
        checkpoints.hyperparameters(checkpoint, source)  # sane before LightningCLI builds the model from them


def _read_checkpoint(path: str) -> tuple[dict[str, Any], str]:
    """``--ckpt_path`` loaded (one ConfigError line if it cannot be), and how errors name it."""
    return checkpoints.read(path, what="--ckpt_path"), f"--ckpt_path {path!r}"


def _with_model(args: list[str]) -> list[str]:
    """``args`` with the model chosen first, so ``--model.*`` arguments may come before ``--model X``.

    Without ``--model X`` or ``--config``, ``validate`` / ``test`` given ``--ckpt_path`` build the
    model the checkpoint describes (its algorithm and hyperparameters), and everything else gets
    the seed's ``Reinforce``. The default is an argument, not a parser default: jsonargparse
    carries a default model's arguments over to another ``--model`` (PPO would get Reinforce's lr).
    """
    subcommand, rest = args[0], args[1:]
    if any(a == "--config" or a.startswith("--config=") for a in rest):
        return args
    choices, others, i = [], [], 0
    while i < len(rest):
        width = 2 if rest[i] == "--model" and i + 1 < len(rest) else 1
        (choices if rest[i] == "--model" or rest[i].startswith("--model=") else others).append(rest[i : i + width])
        i += width
    if not choices:
        choices = [_model_of_checkpoint(args) or ["--model", registry.class_path(registry.DEFAULT)]]
    return [subcommand, *choices[-1], *(a for group in others for a in group)]


def _model_of_checkpoint(args: list[str]) -> list[str]:
    """``--model`` with the algorithm of ``--ckpt_path``, for validate / test; LightningCLI then
    applies the checkpoint's hyperparameters (checked first by ``_check_checkpoint``)."""
    paths = [a.split("=", 1)[1] for a in args if a.startswith("--ckpt_path=")]
    paths += [b for a, b in zip(args, args[1:]) if a == "--ckpt_path"]
    if args[0] not in ("validate", "test") or not paths or not _is_local_file(paths[-1]):
        return []
    checkpoint, source = _read_checkpoint(paths[-1])
    name = checkpoints.entry_of(checkpoint, source).get("algorithm")
    return ["--model", registry.class_path(registry.algorithm(name, source).__name__)]


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
            args=_with_model(args),
        )
    except SIGTERMException:
        print("stopped by SIGTERM after the current update", file=sys.stderr)
        raise SystemExit(143) from None
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
