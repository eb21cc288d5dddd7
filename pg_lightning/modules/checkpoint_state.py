"""What a checkpoint holds beyond the weights: the ``pg_lightning`` entry (counters, every process's
collector state, the W&B run; with many seeds every seed's state) written and read back."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from pg_lightning import checkpoints, distributed


class CheckpointState(L.LightningModule):
    """``on_save_checkpoint`` / ``on_load_checkpoint`` for a module with ``agents`` and ``hparams``."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what the weights do not hold: counters and every process's collector state (seed
        index 0's, as a one-seed run has them), and with many seeds every seed's (``Agent.state_dict``)."""
        first = self.agents[0]
        local = {"collector": first.collector.state_dict() if first.collector is not None else first.collector_state}
        # the class, as LightningCLI records it, so `train.py validate --ckpt_path X` rebuilds this model
        checkpoint["hyper_parameters"].setdefault("_class_path", f"{type(self).__module__}.{type(self).__qualname__}")
        wandb_runs = [logger.version for logger in self.loggers if isinstance(logger, WandbLogger)]
        checkpoint[checkpoints.KEY] = checkpoints.make_entry(
            type(self).__name__, self.hparams.env_id, first.statistics.state_dict(),
            distributed.gather_objects(self.trainer, local),  # every rank calls this hook when saving
            wandb_runs[0] if wandb_runs and self.global_rank == 0 else None,
        )
        if self.num_seeds > 1:
            checkpoint[checkpoints.KEY]["seeds"] = [agent.state_dict() for agent in self.agents]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoints.entry_of(checkpoint, "checkpoint")
        checkpoints.check_identity(state, type(self).__name__, self.hparams.env_id)
        weights = checkpoint["state_dict"]  # saved before the Normalizer, reward statistics were "reward_scaler"
        for key in [k for k in weights if k.startswith("reward_scaler.")]:
            weights["normalizer.rewards." + key.removeprefix("reward_scaler.")] = weights.pop(key)
        if self.num_seeds > 1:
            for agent, seed_state in zip(self.agents, state["seeds"]):
                agent.load_state_dict(seed_state)
            return
        agent = self.agents[0]
        agent.statistics.load_state_dict(state)
        agent.normalizer.restart()  # the collector restarts every episode
        processes = state["processes"]
        if self.global_rank >= len(processes):  # more processes than when saved: fresh envs for the new ranks
            rank_zero_warn(f"checkpoint holds {len(processes)} processes' collectors; ranks "
                           f">= {len(processes)} start fresh envs (seeded by their rank)")
            return
        agent.collector_state = processes[self.global_rank]["collector"]
        if agent.collector is not None and agent.collector_state is not None:
            agent.collector.load_state_dict(agent.collector_state)
            agent.collector_state = None
