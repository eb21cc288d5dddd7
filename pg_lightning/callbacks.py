"""Callbacks that belong to an RL run rather than to the algorithms."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that saves the end of every run, on a cadence of updates.

    With ``save_last``, ``last.ckpt`` is also written when training ends for any reason (the
    env-step budget, ``StopWhenSolved``, ``max_steps`` / ``max_epochs`` / ``max_time``) and when
    it is interrupted after an update (Ctrl-C, SIGTERM, an error), so it holds the run's final
    env steps. ``save_on_train_epoch_end`` defaults to True: periodic and best checkpoints are
    taken after updates (epochs), whether or not evaluation runs then, and a monitored training
    metric scores the weights of the update that logged it.
    """

    def __init__(self, *args: Any, save_on_train_epoch_end: bool | None = True, **kwargs: Any) -> None:
        super().__init__(*args, save_on_train_epoch_end=save_on_train_epoch_end, **kwargs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # ModelCheckpoint copies callback_metrics every epoch before it checks its
        # cadence; an epoch off the cadence saves nothing (unless save_last="link" re-links)
        due = self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0
        if due or self.save_last == "link":
            super().on_train_epoch_end(trainer, pl_module)

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's key, rebuilt only when its arguments change: Lightning reads it on
        every callback hook call."""
        args = (self.monitor, self.mode, self._every_n_train_steps, self._every_n_epochs, self._train_time_interval)
        if getattr(self, "_state_key", (None, ""))[0] != args:
            self._state_key = (args, super().state_key)
        return self._state_key[1]

    def _save_final(self, trainer: L.Trainer) -> None:
        """``last.ckpt`` for the current update, unless it is saved already (or nothing trained)."""
        if self.save_last and not trainer.sanity_checking and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_final(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn == "fit":
            self._save_final(trainer)


class StopWhenSolved(L.Callback):
    """Stop training once the mean return of the last 100 training episodes reaches ``threshold``.

    ``threshold=None`` takes the env spec's ``reward_threshold`` (475 for CartPole-v1); envs
    without one never stop early. Requires ``min_episodes`` finished episodes so that a lucky
    first few episodes do not count as solved. The default reads the module's
    ``return_last100``, fresh after every update; another ``monitor`` is read from the Trainer's
    ``callback_metrics`` (as fresh as the module logs it).

    With many seeds (``num_seeds``) the default judges each seed by its own last-100 mean and
    episodes: a solved seed stops (its ``Agent.solved_at`` records when) while the others train
    on, and training ends when every seed has stopped (solved or at its budget). Another
    ``monitor`` reads the seeds' aggregate (their mean) and stops them all, as ``EarlyStopping`` does.
    """

    def __init__(
        self,
        threshold: float | None = None,
        monitor: str | None = None,
        min_episodes: int = 100,
    ):
        self.threshold, self.monitor, self.min_episodes = threshold, monitor, min_episodes
        self.solved_at: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.threshold is None:
            self.threshold = pl_module.env_spec.reward_threshold
            if self.threshold is None:
                rank_zero_warn(
                    f"{pl_module.hparams.env_id} has no reward_threshold; StopWhenSolved is off"
                )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        agents = getattr(pl_module, "agents", [])
        if self.monitor is None and len(agents) > 1:
            self.stop_solved_seeds(trainer, agents)
            return
        if self.monitor is None:
            name, value = "return_last100", pl_module.return_last100
        else:
            name, value = self.monitor, trainer.callback_metrics.get(self.monitor)
        if self.threshold is None or value is None or pl_module.episodes < self.min_episodes:
            return
        if float(value) >= self.threshold:
            self.solved_at = pl_module.env_steps
            trainer.should_stop = True
            rank_zero_info(
                f"Solved: {name} = {float(value):.1f} >= {self.threshold} after {pl_module.env_steps} env steps"
            )

    def stop_solved_seeds(self, trainer: L.Trainer, agents: list[Any]) -> None:
        """Stop each seed whose own last-100 mean reached the threshold; end when all have stopped."""
        if self.threshold is None:
            return
        for agent in agents:
            statistics = agent.statistics
            solved = statistics.return_last100 is not None and statistics.return_last100 >= self.threshold
            if agent.active and solved and statistics.episodes >= self.min_episodes:
                agent.stop("solved")
                rank_zero_info(f"Solved: seed {agent.seed}'s return_last100 = {statistics.return_last100:.1f} "
                               f">= {self.threshold} after {statistics.env_steps} env steps")
        trainer.should_stop = trainer.should_stop or all(not agent.active for agent in agents)


class EnvStepProgressBar(ProgressBar):
    """One tqdm bar over env steps (towards ``max_env_steps``), showing the returns and steps/s.

    Lightning's default bar counts batches per epoch; here an epoch is a single update, so it
    would draw a new bar for every update.
    """

    def __init__(self, refresh_seconds: float = 0.25):
        super().__init__()
        self.refresh_seconds = refresh_seconds
        self._enabled = True
        self._bar = None
        self._shown = 0
        self._last_refresh = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        from tqdm.auto import tqdm

        budget = getattr(pl_module.hparams, "max_env_steps", None)  # per seed; the bar counts all seeds' steps
        total = budget * getattr(pl_module.hparams, "num_seeds", 1) if budget else None
        self._shown = getattr(pl_module, "env_steps", 0)
        self._bar = tqdm(total=total, initial=self._shown, desc="Training", unit=" steps",
                         dynamic_ncols=True, smoothing=0.1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._bar is None:
            return
        now = time.monotonic()
        if now - self._last_refresh < self.refresh_seconds:
            return
        self._last_refresh = now
        self._bar.update(pl_module.env_steps - self._shown)
        self._shown = pl_module.env_steps
        postfix = {"updates": trainer.current_epoch + 1, "episodes": pl_module.episodes}
        if pl_module.return_last100 is not None:
            postfix["last100"] = f"{pl_module.return_last100:.1f}"
        if "val/episode_return" in trainer.progress_bar_metrics:
            postfix["val"] = f"{float(trainer.progress_bar_metrics['val/episode_return']):.1f}"
        self._bar.set_postfix(postfix, refresh=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.update(pl_module.env_steps - self._shown)
            self._bar.close()
            self._bar = None

    def print(self, *args: Any, **kwargs: Any) -> None:
        print(*args, **kwargs)
