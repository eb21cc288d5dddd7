"""Evaluation during and after training: every seed's deterministic policy in its own, separately
seeded env, as Lightning's validation and test loops."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader

from pg_lightning.evaluation import (
    EVAL_SEED_OFFSET,
    EvaluationDataset,
    evaluate,
    evaluation_metrics,
    log_video,
    video_folder,
)


class EvaluationSteps(L.LightningModule):
    """``validate`` / ``test`` and periodic evaluation for a module with ``agents`` and ``hparams``
    (``eval_every``, ``eval_episodes``, ``record_video``, the env's)."""

    def val_dataloader(self) -> DataLoader:
        return DataLoader(EvaluationDataset(self._evaluation_due, self._play_evaluation), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(EvaluationDataset(lambda: True, self._play_evaluation), batch_size=None)

    def _evaluation_due(self) -> bool:
        """Whether this validation run plays episodes: always in ``validate``; during ``fit`` (where
        validation runs only with ``eval_every`` or a Trainer cadence: see ``evaluates_during_fit``)
        every ``eval_every`` updates, or at each run of the Trainer's cadence; never in the sanity check."""
        if self.trainer.state.fn != "fit":
            return True
        every = self.hparams.eval_every
        return not self.trainer.sanity_checking and (not every or (self.current_epoch + 1) % every == 0)

    def _play_evaluation(self) -> dict[str, Any]:
        """Every seed's evaluation episodes, each in its own separately seeded env (the first seed's
        first episode recorded); with many seeds their results side by side."""
        hp = self.hparams
        rank = self.global_rank
        folder = video_folder(self.trainer) if hp.record_video and rank == 0 else None
        results = [
            evaluate(agent.policy, hp.env_id, hp.eval_episodes, agent.seed + EVAL_SEED_OFFSET + rank * hp.eval_episodes,
                     hp.env_kwargs, folder if index == 0 else None, video_prefix=f"update{self.current_epoch}",
                     wrappers=hp.wrappers)
            for index, agent in enumerate(self.agents)
        ]
        return {key: np.concatenate([r[key] for r in results]) for key in results[0]}

    def _log_evaluation(self, results: dict[str, Tensor], prefix: str) -> None:
        metrics, shown = evaluation_metrics(results, prefix, self.env_steps)
        self.log_dict(metrics, sync_dist=True, batch_size=len(results["returns"]))
        self.log_dict(shown, prog_bar=True, sync_dist=True, batch_size=len(results["returns"]))
        if self.hparams.record_video and self.global_rank == 0:
            log_video(self.loggers, video_folder(self.trainer), f"update{self.current_epoch}", f"{prefix}/video",
                      self.env_steps, self.trainer.current_epoch)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_evaluation(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_evaluation(batch, "test")
