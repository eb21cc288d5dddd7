"""One seed's learner: what a run keeps for each of its ``num_seeds`` independent agents.

An agent has its own weights (``policy``), normalisation statistics, run statistics (counters,
episode window, skipped updates), gradient guard, env collector and shuffling stream. Nothing is
shared between two agents: a many-seeds module steps each one's parameters only with its own loss,
clips them by its own norm and stops it on its own (solved or at its budget) while the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pg_lightning.collector import Collector
from pg_lightning.gradient_step import GradientStep
from pg_lightning.normalization import Normalizer
from pg_lightning.policies import ActorCritic
from pg_lightning.run_statistics import RunStatistics

STOP_REASONS = ("solved", "budget")


@dataclass(eq=False)
class Agent:
    """Seed ``seed``'s policy and the state that goes with it (see the module docstring)."""

    seed: int
    policy: ActorCritic
    normalizer: Normalizer
    statistics: RunStatistics
    gradients: GradientStep
    shuffle: torch.Generator  # PPO's minibatch order
    collector: Collector | None = None
    collector_state: dict[str, Any] | None = None  # restored into the next collector
    stopped: str | None = None  # why this seed stopped changing: "solved" or "budget"
    solved_at: int | None = None  # its env steps when it was solved

    @property
    def active(self) -> bool:
        return self.stopped is None

    def stop(self, reason: str) -> None:
        """Stop this seed: it collects and changes no more (``solved`` also records when)."""
        if self.stopped is None:
            self.stopped = reason
            if reason == "solved":
                self.solved_at = self.statistics.env_steps

    def state_dict(self) -> dict[str, Any]:
        """This seed's part of a many-seeds checkpoint entry (its weights are in the module's)."""
        return {"seed": self.seed, "counters": self.statistics.state_dict(),
                "collector": self.collector.state_dict() if self.collector is not None else self.collector_state,
                "shuffle_rng": self.shuffle.get_state(), "stopped": self.stopped, "solved_at": self.solved_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.statistics.load_state_dict(state["counters"])
        self.shuffle.set_state(state["shuffle_rng"])
        self.stopped, self.solved_at = state["stopped"], state["solved_at"]
        self.collector_state = state["collector"]
        if self.collector is not None and self.collector_state is not None:
            self.collector.load_state_dict(self.collector_state)
            self.collector_state = None
        self.normalizer.restart()  # the collector restarts every episode
