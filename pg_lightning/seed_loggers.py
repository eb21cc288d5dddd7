"""One logger per seed of a many-seeds run, beside each of the Trainer's loggers, so that every seed
has the curves (and W&B run) a one-seed run of it would have.

Per Trainer logger (rank zero only):

- ``CSVLogger``: a CSVLogger per seed writing ``<its log_dir>/seed<s>/metrics.csv`` (and
  ``hparams.yaml``), the layout ``pg_lightning.plot`` reads as one seed each.
- ``WandbLogger`` (Lightning's or ``pg_lightning.loggers``'): a W&B run per seed in this process
  (``wandb.init(reinit="create_new")``, each ``Run`` used directly, never the global one), named
  ``<name>-seed<s>`` and grouped under ``<name>`` as ``pg_lightning.seeds`` names them, with the
  Trainer run's project, folder, mode and settings, its config (the seed's own seed in it) and the
  x-axes of ``pg_lightning.loggers.WandbLogger``. Its id is ``<Trainer run id>-seed<s>``, so a run
  that resumes the Trainer's W&B run resumes every seed's too.
- any other logger: there is no general way to make a sibling, so the seed's metrics go to the
  Trainer's logger itself with their keys prefixed ``seed<s>/``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L
    from lightning.pytorch.loggers import Logger, WandbLogger


class SeedLoggers:
    """One logger per seed for each of the Trainer's loggers, so every seed of a many-seeds run has
    the curves (and W&B run) a one-seed run has.

    ``name`` names the seeds' W&B runs (``<name>-seed<s>``, group ``<name>``) when the Trainer's
    W&B logger was given no run name: the config's name, as ``pg_lightning.seeds`` uses. Without
    either, the Trainer run's own name (its id offline, where runs have no name until synced).
    The Trainer's loggers' hyperparameters logged so far are copied to each seed's logger."""

    def __init__(self, trainer: L.Trainer, seeds: list[int], name: str | None = None) -> None:
        from lightning.pytorch.loggers import CSVLogger
        from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

        self.seeds = list(seeds)
        self.loggers: list[list[Logger]] = [[] for _ in self.seeds]  # seed index -> that seed's own loggers
        self.shared: list[Logger] = []  # Trainer loggers that take every seed's metrics as seed<s>/...
        self._runs: list[Any] = []  # the seeds' W&B runs, finished by `finalize`
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                hparams = logger.experiment.hparams
                for index, seed in enumerate(self.seeds):
                    own = CSVLogger(logger.log_dir, name=f"seed{seed}", version="",
                                    flush_logs_every_n_steps=logger._flush_logs_every_n_steps)
                    self._add(index, own, hparams)
            elif isinstance(logger, LightningWandbLogger):
                self._add_wandb_runs(logger, name)
            else:
                self.shared.append(logger)

    def _add(self, index: int, logger: Logger, hparams: Mapping[str, Any]) -> None:
        """``logger`` as seed ``index``'s, with the Trainer logger's ``hparams`` (its seed in them)."""
        self.loggers[index].append(logger)
        if hparams:
            logger.log_hyperparams(with_seed(hparams, self.seeds[index]))

    def _add_wandb_runs(self, logger: WandbLogger, name: str | None) -> None:
        """A W&B run per seed beside ``logger``'s, each in a ``pg_lightning.loggers.WandbLogger``."""
        import wandb

        from pg_lightning.loggers import WandbLogger as SeedWandbLogger

        # the Trainer's run first: started after `create_new` runs, a plain wandb.init would return the
        # last of them instead of a run of its own
        trainer_run = logger.experiment
        # project, dir, mode, settings, tags, ... as the Trainer's run (unset ones left to W&B's defaults)
        init = {key: value for key, value in logger._wandb_init.items() if value is not None}
        base = init.get("name") or name or trainer_run.name or trainer_run.id
        hparams = trainer_run.config.as_dict()
        for index, seed in enumerate(self.seeds):
            run = wandb.init(**{**init, "name": f"{base}-seed{seed}", "group": init.get("group") or base,
                                "id": f"{trainer_run.id}-seed{seed}", "reinit": "create_new"})
            # the default axes Lightning's WandbLogger defines for the runs it starts itself
            run.define_metric("trainer/global_step")
            run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
            self._runs.append(run)
            self._add(index, SeedWandbLogger(experiment=run, mode=run.settings.mode, project=init.get("project"),
                                             save_dir=init.get("dir")), hparams)

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        """``params`` in every seed's own loggers, each with its own seed (see ``with_seed``)."""
        for index in range(len(self.seeds)):
            for logger in self.loggers[index]:
                logger.log_hyperparams(with_seed(params, self.seeds[index]))

    def log_metrics(self, index: int, metrics: dict[str, float], step: int) -> None:
        """Seed ``seeds[index]``'s metrics (the same keys a one-seed run logs: train/..., val/...)."""
        for logger in self.loggers[index]:
            logger.log_metrics(metrics, step)
        if self.shared:
            prefixed = {f"seed{self.seeds[index]}/{key}": value for key, value in metrics.items()}
            for logger in self.shared:
                logger.log_metrics(prefixed, step)

    def finalize(self, status: str) -> None:
        """Flush/close every per-seed logger (W&B runs finished, exit code 1 when ``status`` is ``failed``)."""
        for loggers in self.loggers:
            for logger in loggers:
                logger.finalize(status)
        for run in self._runs:
            run.finish(exit_code=1 if status == "failed" else 0)
        self._runs = []


def with_seed(params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A copy of a run's hyperparameters as a one-seed run of ``seed`` has them: ``seed`` and
    ``seed_everything`` (the module's and the CLI config's keys) and ``model.init_args.seed`` set to
    ``seed`` where they hold a seed; everything else as it is."""
    params = copy.deepcopy(dict(params))
    model = params.get("model")
    scopes = [params] + ([model["init_args"]] if isinstance(model, dict) and isinstance(model.get("init_args"), dict) else [])
    for scope in scopes:
        for key in ("seed", "seed_everything"):
            if isinstance(scope.get(key), int) and not isinstance(scope[key], bool):
                scope[key] = seed
    return params

