"""The run's statistics: its counters, the last-100 window of episode returns, the sweep objective
and the metrics published after every update.

Counts come in as numbers and tensors of one batch (this module does not know the batch type) and
are pooled over processes, so every process holds the same counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from pg_lightning import distributed

PROGRESS_BAR = ("train/return_last100", "train/episode_return")  # shown by any progress bar
Write = Callable[[dict[str, float], int], None]  # (metrics, step): one seed's loggers


class RunStatistics:
    """Env steps, episodes, the last-100 mean return, its area and the skipped updates of a run;
    ``state_dict`` is their checkpoint entry."""

    def __init__(self) -> None:
        self.env_steps = 0  # summed over processes
        self.episodes = 0
        self.return_last100: float | None = None  # mean of the last 100 episodes, pooled
        self.return_area = 0.0  # Σ return_last100 · env steps of each update: see return_auc
        self.skipped_updates = 0
        self._clock = (time.perf_counter(), 0)  # (time, env steps) steps per second count from
        self._episode_metrics: dict[str, float] = {}  # the last batch's finished episodes
        self._unlogged: dict[str, Any] = {}  # the last update's metrics, until a logger has them
        self.latest: dict[str, Any] = {}  # the last update's metrics

    def start_clock(self) -> None:
        """Steps per second count from now."""
        self._clock = (time.perf_counter(), self.env_steps)

    def count(self, trainer: L.Trainer, env_steps: int, episode_returns: Tensor, episode_lengths: Tensor,
              window: Sequence[float]) -> None:
        """Add one batch (``env_steps`` transitions, the episodes it finished) and this process's
        window of recent returns, pooled over every process."""
        steps, episodes, return_sum, length_sum, window_sum, window_size = distributed.reduce(trainer, [
            env_steps, len(episode_returns), float(episode_returns.sum()),
            float(episode_lengths.sum()), sum(window), len(window),
        ])
        self.env_steps += int(steps)
        self.episodes += int(episodes)
        self.return_last100 = window_sum / window_size if window_size else None
        if self.return_last100 is not None:
            self.return_area += self.return_last100 * steps
        self._episode_metrics = (
            {"train/episode_return": return_sum / episodes, "train/episode_length": length_sum / episodes}
            if episodes else {}
        )

    def return_auc(self, budget: int | None) -> float | None:
        """The sweep objective: the mean of ``return_last100`` over the env-step ``budget``, the rest
        of the budget counted at the current value. Unlike ``return_last100``, which stopping at
        the threshold caps, it ranks a run that solves in 60k steps above one that needs 200k."""
        if not budget or self.return_last100 is None:
            return None
        return (self.return_area + max(budget - self.env_steps, 0) * self.return_last100) / budget

    def metrics(self, terms: dict[str, Tensor], budget: int | None, learning_rate: float) -> dict[str, Any]:
        """This update's metrics: ``terms`` (the loss terms) as ``train/<name>`` and the counters."""
        metrics: dict[str, Any] = {f"train/{k}": v.detach() for k, v in terms.items()}
        metrics.update({
            "train/env_steps": self.env_steps,
            "train/episodes": self.episodes,
            "train/steps_per_second": (self.env_steps - self._clock[1]) / max(time.perf_counter() - self._clock[0], 1e-9),
            "train/learning_rate": learning_rate,
            "train/skipped_updates": self.skipped_updates,
        })
        if self.return_last100 is not None:
            metrics["train/return_last100"] = self.return_last100
            if budget:
                metrics["train/return_auc"] = self.return_auc(budget)
        metrics.update(self._episode_metrics)
        return metrics

    def publish(self, trainer: L.Trainer, metrics: dict[str, Any]) -> None:
        """This update's ``metrics`` where Lightning's users read them: ``trainer.callback_metrics``
        after every update (EarlyStopping, ModelCheckpoint(monitor=...), any callback), the returns
        in ``trainer.progress_bar_metrics``, and the loggers every ``log_every_n_steps`` updates and
        at the end of a run, as Lightning writes logs. Directly, not through
        ``LightningModule.log``, whose cost per key is that of a whole small update
        (benchmarks/README.md)."""
        numbers = [k for k, v in metrics.items() if not isinstance(v, Tensor)]  # as tensors in one call
        callback_metrics = trainer.callback_metrics  # a property that gathers Lightning's own results each time
        callback_metrics.update(metrics)
        callback_metrics.update(zip(numbers, torch.tensor([metrics[k] for k in numbers], dtype=torch.float64).unbind()))
        trainer.progress_bar_metrics.update({k: metrics[k] for k in PROGRESS_BAR if k in metrics})
        self.hold(trainer, metrics)

    def hold(self, trainer: L.Trainer, metrics: dict[str, Any], write: Write | None = None) -> None:
        """Keep ``metrics`` for the loggers (``write``, default: the Trainer's loggers), written
        every ``log_every_n_steps`` updates and at the end of a run."""
        self._unlogged = self.latest = metrics
        if (trainer.current_epoch + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop:
            self.log(trainer, write)

    def log(self, trainer: L.Trainer, write: Write | None = None) -> None:
        """Hand the last update's metrics to ``write(metrics, step)`` (default: the Trainer's
        loggers, which write on rank zero), once."""
        if self._unlogged:
            logged = {k: float(v) for k, v in self._unlogged.items()}
            if write is not None:
                write(logged, trainer.current_epoch)
            for logger in trainer.loggers if write is None else ():
                logger.log_metrics(logged, step=trainer.current_epoch)
            self._unlogged = {}

    def state_dict(self) -> dict[str, Any]:
        """The counters of the checkpoint entry."""
        return {"env_steps": self.env_steps, "episodes": self.episodes, "skipped_updates": self.skipped_updates,
                "return_area": self.return_area}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps, self.episodes = state["env_steps"], state["episodes"]
        self.skipped_updates = state["skipped_updates"]
        self.return_area = state.get("return_area", 0.0)


SUMMED = ("train/env_steps", "train/episodes", "train/skipped_updates", "train/steps_per_second")


def aggregate(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Many seeds' metrics as one run's: counts and steps per second summed over the seeds, every
    other metric averaged over the seeds that have it (the progress bar, callbacks and the
    Trainer's own loggers read this; each seed's own curves go to its own loggers)."""
    keys = dict.fromkeys(k for metrics in per_seed for k in metrics)
    result = {}
    for key in keys:
        values = [float(m[key]) for m in per_seed if key in m]
        result[key] = sum(values) if key in SUMMED else sum(values) / len(values)
    return result
