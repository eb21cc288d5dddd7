"""Callbacks that belong to an RL run rather than to the algorithms."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


class StopWhenSolved(L.Callback):
    """Stop training once ``monitor`` (the mean of the last 100 episodes) reaches ``threshold``.

    ``threshold=None`` takes the env spec's ``reward_threshold`` (475 for CartPole-v1); envs
    without one never stop early. Requires ``min_episodes`` finished episodes so that a lucky
    first few episodes do not count as solved.
    """

    def __init__(
        self,
        threshold: float | None = None,
        monitor: str = "train/return_last100",
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
        value = trainer.callback_metrics.get(self.monitor)
        if self.threshold is None or value is None or pl_module.episodes < self.min_episodes:
            return
        if float(value) >= self.threshold:
            self.solved_at = pl_module.env_steps
            trainer.should_stop = True
            rank_zero_info(
                f"Solved: {self.monitor} = {float(value):.1f} >= {self.threshold} "
                f"after {pl_module.env_steps} env steps"
            )
