"""``train.py``'s command line: LightningCLI with RL defaults, ``fit`` when no subcommand is given."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any

import torch
import yaml
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from pg_lightning import checkpoints, distributed, packaged
from pg_lightning.callbacks import RunCheckpoint, StopWhenSolved
from pg_lightning.classpaths import import_class
from pg_lightning.cli_args import check_checkpoint, given_model_arguments, with_model
from pg_lightning.errors import ConfigError, TrainingError
from pg_lightning.loggers import run_folder
from pg_lightning.modules import PolicyGradient
from pg_lightning.statistics import format_aggregate
from pg_lightning.trainer_checks import check_trainer

SUBCOMMANDS = ("fit", "validate", "test", "predict")

DEFAULTS = {
    "trainer.max_epochs": -1,  # one epoch is one update; the env-step budget or StopWhenSolved ends it
    "trainer.log_every_n_steps": 10,
    "trainer.enable_model_summary": False,  # a 4-128-2 MLP; --trainer.enable_model_summary true shows it
    "trainer.logger": {"class_path": "pg_lightning.loggers.WandbLogger"},
    "trainer.callbacks": [{"class_path": "pg_lightning.callbacks.EnvStepProgressBar"}],
    "checkpoint.monitor": "train/return_last100",
    "checkpoint.mode": "max",
    "checkpoint.save_last": True,
    "checkpoint.every_n_epochs": 25,
    "checkpoint.filename": "best",
}


# Lightning's start-up lines that tell a first `python train.py` nothing it can act on (the seed is
# in the result line; a GPU that is there and used is still announced)
QUIET = ("💡 Tip:", "GPU available: False", "TPU available: False", "HPU available: False", "Seed set to")
# what a checkpoint's weights and collector state were made for: a resumed run cannot change them
FIXED_BY_CHECKPOINT = ("hidden_sizes", "activation", "critic", "normalize_observations", "num_envs", "network", "wrappers")
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed")


@contextmanager
def _quiet_start():
    """Lightning's loggers without the ``QUIET`` lines, while the CLI runs."""
    quiet = logging.Filter()
    quiet.filter = lambda record: not str(record.msg).startswith(QUIET)
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


class SaveRunConfig(SaveConfigCallback):
    """The resolved config as ``config.yaml`` in the run's own folder (next to its
    ``checkpoints/``), and the whole of it in every logger's hyperparameters (the W&B run config)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            folder = run_folder(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(folder / self.config_filename), skip_none=False, overwrite=True,
                             multifile=self.multifile)
            config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            for logger in trainer.loggers:
                logger.log_hyperparams(config)
        self.already_saved = True


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
        parser.add_argument("--torch_threads", type=int | None, default=None,
                            help="torch CPU threads; default: 1 (fastest for one seed's small network), "
                                 "every core for many seeds (their stacked steps are compute-bound)")
        parser.set_defaults(DEFAULTS)

    def _config(self):
        """This run's config (the subcommand's, when there are subcommands)."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def parse_arguments(self, parser, args) -> None:
        # ``main`` always passes the argument list (with ``fit`` inserted); no warning about it.
        self.config = parser.parse_args(args)
        self.given_model_arguments = given_model_arguments(args)
        config = self._config()
        # before Lightning reads it: what the user gives again is theirs, the rest must pass the trust boundary
        self.checkpoint = check_checkpoint(config.get("ckpt_path"), config.model, self.given_model_arguments)
        if config.seed_everything is True and "seed" in (config.model.get("init_args") or {}):
            config.seed_everything = config.model.init_args.seed  # one seed fixes the run

    def _parse_ckpt_path(self) -> None:
        """The checkpoint's hyperparameters over the whole model config (as LightningCLI 2.6 does,
        here for every supported Lightning: 2.5 cannot read ``_class_path``); the ones this command
        sets itself still win, so ``--ckpt_path X --model.max_env_steps 2M`` resumes a run with a
        longer budget, except ``FIXED_BY_CHECKPOINT``, which must match."""
        hparams = dict((self.checkpoint or {}).get("hyper_parameters") or {})  # read and checked in parse_arguments
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        init_args = self._config().model.init_args
        given = {k: init_args[k] for k in self.given_model_arguments if k in init_args}
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)
        saved = self._config().model.init_args
        for key, value in given.items():
            if key in FIXED_BY_CHECKPOINT and saved[key] != value:
                raise ConfigError(f"--model.{key} {value!r} differs from the checkpoint's {saved[key]!r}; "
                                  f"a run resumed from a checkpoint keeps its network and envs")
            saved[key] = value

    def before_instantiate_classes(self) -> None:
        config = self._config()
        torch.set_num_threads(config.torch_threads or default_threads(config.model.init_args.get("num_seeds", 1)))
        if config.get("weights_only", False) is None:
            config.weights_only = True  # pg_lightning checkpoints hold only tensors and plain data
        trainer = config.trainer
        if trainer.enable_progress_bar is False and trainer.callbacks:  # the bar is a callback here
            trainer.callbacks = [c for c in trainer.callbacks if not c.class_path.endswith("ProgressBar")]
        if trainer.enable_checkpointing is False:  # the checkpoint group is a callback too: make it save nothing
            trainer.enable_checkpointing = None
            config.checkpoint.save_top_k, config.checkpoint.save_last = 0, False
        run_id = (self.checkpoint or {}).get(checkpoints.KEY, {}).get("wandb_run_id")
        if self.subcommand == "fit" and run_id:
            _continue_wandb_run(trainer.logger, run_id)

    def before_fit(self) -> None:
        """Refuse what cannot work before the config, W&B run or checkpoints are written."""
        check_trainer(self.trainer, self.model)
        if self._config().get("lr_scheduler") is not None and self.model.hparams.anneal_lr:
            raise ConfigError("anneal_lr and --lr_scheduler both set the learning rate; choose one")

    def solved_at(self) -> int | None:
        """The env step at which ``StopWhenSolved`` saw this fit's run solved, if it did."""
        return next((c.solved_at for c in self.trainer.callbacks if isinstance(c, StopWhenSolved)), None)

    def after_fit(self) -> None:
        """One line with the run's result and where its files are."""
        model, trainer = self.model, self.trainer
        if not trainer.is_global_zero:
            return
        solved = self.solved_at()
        result = "no episode finished" if model.return_last100 is None else f"last-100 return {model.return_last100:.1f}"
        if solved is not None:
            result += f", solved at {solved:,} env steps"
        seeds = f"seed {model.hparams.seed}"
        if model.summary is not None:  # many seeds: their aggregate, with its interval
            seeds = f"seeds {model.hparams.seed}-{model.hparams.seed + model.num_seeds - 1}"
            result = format_aggregate(model.summary["aggregate"])
        print(f"Done: {model.env_steps:,} env steps, {trainer.current_epoch:,} updates, {model.episodes:,} episodes "
              f"({seeds}); {result}; run folder {run_folder(trainer)}")


def default_threads(num_seeds: int) -> int:
    """torch's CPU threads when ``--torch_threads`` is not given: 1 for one seed (its small
    network's ops are overhead-bound, and a second thread only adds synchronisation), every core
    this process may use for many seeds (a stacked step is compute-bound)."""
    return 1 if num_seeds == 1 else distributed.usable_cores()


def _continue_wandb_run(logger_config: Any, run_id: str) -> None:
    """Resuming a checkpoint continues its W&B run (same id, same run folder) unless the logger
    names a run of its own."""
    configs = logger_config if isinstance(logger_config, list) else [logger_config]
    for config in configs:
        if not hasattr(config, "class_path"):
            continue
        cls = import_class(config.class_path)
        init = config.init_args
        if issubclass(cls, WandbLogger) and init.get("id") is None and init.get("version") is None:
            init.id = run_id


def _config_error(err: BaseException) -> ConfigError | None:
    """The ConfigError behind ``err``, which jsonargparse wraps in its own ValueError: as its cause,
    or (older jsonargparse, for a Union of types) quoted in its message."""
    message = str(err)
    while err is not None:
        if isinstance(err, ConfigError):
            return err
        err = err.__cause__ or err.__context__
    return next((e for e in reversed(ConfigError.raised) if str(e) and str(e) in message), None)


def _help_epilog() -> dict[str, Any]:
    """``parser_kwargs`` that end every ``--help`` with the packaged configs (``packaged.epilog``)."""
    epilog = {"epilog": packaged.epilog()}
    return {**epilog, **{subcommand: dict(epilog) for subcommand in SUBCOMMANDS}}


def main(args: list[str] | None = None) -> CLI:
    """Run the CLI on ``args`` (default: the command line); ``fit`` is implied when the first
    argument is not a subcommand. Bad settings exit with status 2 and a one-line message."""
    args = list(sys.argv[1:] if args is None else args)
    if not args or args[0] not in SUBCOMMANDS:
        args = ["fit", *args]
    exit_code = 1
    try:
        with _quiet_start():
            cli = CLI(
                PolicyGradient,
                subclass_mode_model=True,
                save_config_callback=SaveRunConfig,
                save_config_kwargs={"overwrite": True},
                args=with_model(packaged.resolve_args(args)),
                parser_kwargs=_help_epilog(),
            )
        exit_code = 0
        return cli
    except SIGTERMException:
        exit_code = 143
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
    finally:
        _finish_wandb_run(exit_code)


def _finish_wandb_run(exit_code: int) -> None:
    """End the W&B run this command started, so the next command in the process (the next seed
    of ``pg_lightning.seeds``) starts its own run instead of reusing it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.run.finish(exit_code=exit_code)
