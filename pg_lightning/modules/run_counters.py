"""The run's counters as a user reads them off the module: one seed's, or many seeds' summed
(env steps, episodes, skipped updates) or averaged (the last-100 return, the sweep objective)."""

from __future__ import annotations

from typing import Any

import lightning as L


class RunCounters(L.LightningModule):
    """Read-only counters of a module with ``agents`` (each seed's ``RunStatistics`` owns them)."""

    @property
    def env_steps(self) -> int:
        """Env steps so far, summed over processes (and seeds)."""
        return sum(agent.statistics.env_steps for agent in self.agents)

    @property
    def episodes(self) -> int:
        return sum(agent.statistics.episodes for agent in self.agents)

    @property
    def return_last100(self) -> float | None:
        """Mean return of the last 100 episodes (pooled over processes; averaged over the seeds
        that have one); ``None`` before the first."""
        return _mean([agent.statistics.return_last100 for agent in self.agents])

    @property
    def skipped_updates(self) -> int:
        return sum(agent.statistics.skipped_updates for agent in self.agents)

    @property
    def return_auc(self) -> float | None:
        """The sweep objective: ``RunStatistics.return_auc`` over ``max_env_steps`` (averaged over seeds)."""
        return _mean([agent.statistics.return_auc(self.hparams.max_env_steps) for agent in self.agents])

    def seed_records(self) -> list[dict[str, Any]]:
        """Each seed's line of ``summary.json``: its seed, env steps, solved point and last-100 return."""
        return [{"seed": a.seed, "env_steps": a.statistics.env_steps, "solved_at": a.solved_at,
                 "return_last100": a.statistics.return_last100} for a in self.agents]


def _mean(values: list[float | None]) -> float | None:
    """The mean of the values that are not None (None if none is)."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None
