"""The Trainer flags a Lightning user sets, checked against what an RL module can honour.

Each flag either works as in any LightningModule or is refused here, in one line naming the flag
and what to use instead, before training starts (``setup``, and the CLI before anything is written).
One training epoch is one batch is one policy update; that explains most refusals.
"""

from __future__ import annotations

import lightning as L

from pg_lightning.errors import ConfigError

REFUSED_PRECISIONS = ("16-true", "bf16-true")


def validation_cadence_set(trainer: L.Trainer) -> bool:
    """Whether the Trainer was given a validation cadence (anything but its defaults)."""
    return trainer.check_val_every_n_epoch != 1 or trainer.val_check_interval != 1.0


def check_trainer(trainer: L.Trainer, module: L.LightningModule) -> None:
    """A ConfigError for a Trainer setting ``module`` (a ``PolicyGradient``: its ``hparams`` have
    ``eval_every`` and ``num_seeds``) cannot honour."""
    num_seeds = module.hparams.get("num_seeds", 1)
    if num_seeds > 1 and trainer.world_size > 1:
        raise ConfigError(
            f"num_seeds={num_seeds} with {trainer.world_size} processes: DDP averages every gradient over the "
            "processes, which would mix the seeds; train many seeds in one process (or one seed per process)"
        )
    if str(trainer.precision) in REFUSED_PRECISIONS:
        raise ConfigError(
            f"precision={trainer.precision!r} keeps weights, statistics and returns in 16 bits, too coarse "
            "for policy-gradient updates; use '16-mixed' or 'bf16-mixed' (or 32)"
        )
    if trainer.accumulate_grad_batches != 1:
        raise ConfigError(
            f"accumulate_grad_batches={trainer.accumulate_grad_batches} is not supported: every update trains "
            "on one batch played by the weights it updates; for bigger batches raise episodes_per_batch, "
            "n_steps or num_envs"
        )
    if not module.automatic_optimization and trainer.gradient_clip_val is not None:
        raise ConfigError(
            f"gradient_clip_val={trainer.gradient_clip_val} needs automatic optimisation; "
            f"{type(module).__name__} clips with its max_grad_norm"
        )
    interval = trainer.val_check_interval
    if isinstance(interval, float) and interval != 1.0:
        raise ConfigError(
            f"val_check_interval={interval} splits an epoch, which is a single update here; use an integer "
            "val_check_interval with check_val_every_n_epoch=None, or check_val_every_n_epoch"
        )
    if isinstance(interval, int) and interval > 1 and trainer.check_val_every_n_epoch is not None:
        raise ConfigError(
            f"val_check_interval={interval} counts batches within an epoch, which holds one update: "
            "pass check_val_every_n_epoch=None with it, or use check_val_every_n_epoch"
        )
    limit = trainer.limit_train_batches
    if isinstance(limit, float) and limit not in (0.0, 1.0):
        raise ConfigError(f"limit_train_batches={limit}: an epoch is one batch; use 1 (or 0 to skip training)")
    if module.hparams.eval_every and validation_cadence_set(trainer):
        raise ConfigError(
            f"eval_every={module.hparams.eval_every} and the Trainer's check_val_every_n_epoch / "
            "val_check_interval both set when to evaluate; set one of them"
        )
