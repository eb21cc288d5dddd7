"""RunStatistics: counters pooled from a batch's numbers, the last-100 window and its area, the
sweep objective, the metrics published after each update and the checkpoint entry's counters."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pg_lightning.run_statistics import RunStatistics, aggregate


class Logger:
    def __init__(self):
        self.logged = []

    def log_metrics(self, metrics, step):
        self.logged.append((step, metrics))


def fake_trainer(epoch=0, every=2, loggers=()):
    """What RunStatistics reads and writes of a one-process Trainer."""
    optimizer = SimpleNamespace(param_groups=[{"lr": 0.25}])
    return SimpleNamespace(world_size=1, callback_metrics={}, progress_bar_metrics={}, optimizers=[optimizer],
                           current_epoch=epoch, log_every_n_steps=every, should_stop=False, loggers=list(loggers))


def test_count_adds_steps_and_episodes_and_takes_the_windows_mean():
    stats = RunStatistics()
    stats.count(fake_trainer(), 10, torch.tensor([3.0, 5.0]), torch.tensor([4.0, 6.0]), [3.0, 5.0])
    stats.count(fake_trainer(), 6, torch.tensor([]), torch.tensor([]), [3.0, 5.0, 10.0])
    assert (stats.env_steps, stats.episodes) == (16, 2)
    assert stats.return_last100 == pytest.approx(6.0)
    assert stats.return_area == pytest.approx(4.0 * 10 + 6.0 * 6)  # the window's mean times each batch's steps


def test_return_auc_counts_the_rest_of_the_budget_at_the_current_value():
    stats = RunStatistics()
    assert stats.return_auc(100) is None  # no episode yet
    stats.count(fake_trainer(), 40, torch.tensor([2.0]), torch.tensor([2.0]), [2.0])
    assert stats.return_auc(None) is None
    assert stats.return_auc(100) == pytest.approx((2.0 * 40 + 60 * 2.0) / 100)
    stats.count(fake_trainer(), 20, torch.tensor([8.0]), torch.tensor([8.0]), [2.0, 8.0])
    assert stats.return_auc(100) == pytest.approx((80 + 5.0 * 20 + 40 * 5.0) / 100)


def test_publish_fills_callback_metrics_and_logs_every_n_updates_and_at_the_end():
    stats, logger = RunStatistics(), Logger()
    stats.count(fake_trainer(), 8, torch.tensor([4.0]), torch.tensor([8.0]), [4.0])
    trainer = fake_trainer(epoch=0, every=2, loggers=[logger])
    stats.publish(trainer, stats.metrics({"loss": torch.tensor(1.5)}, 80, learning_rate=0.25))
    metrics = trainer.callback_metrics
    assert float(metrics["train/loss"]) == 1.5 and float(metrics["train/env_steps"]) == 8.0
    assert float(metrics["train/learning_rate"]) == 0.25 and float(metrics["train/episode_length"]) == 8.0
    assert float(metrics["train/return_auc"]) == pytest.approx(4.0)
    assert set(trainer.progress_bar_metrics) == {"train/return_last100", "train/episode_return"}
    assert logger.logged == []  # update 1 of every 2
    stats.log(trainer)  # the end of a run hands it over
    assert [step for step, _ in logger.logged] == [0]
    stats.log(trainer)  # once
    assert len(logger.logged) == 1
    stats.publish(fake_trainer(epoch=1, every=2, loggers=[logger]), stats.metrics({}, None, 0.25))
    assert len(logger.logged) == 2 and "train/return_auc" not in logger.logged[1][1]


def test_an_update_without_finished_episodes_publishes_no_episode_metrics():
    stats = RunStatistics()
    stats.count(fake_trainer(), 8, torch.tensor([]), torch.tensor([]), [])
    trainer = fake_trainer()
    stats.publish(trainer, stats.metrics({}, 80, 0.25))
    assert stats.return_last100 is None
    assert not {"train/episode_return", "train/return_last100", "train/return_auc"} & set(trainer.callback_metrics)
    assert trainer.progress_bar_metrics == {}


def test_the_checkpoint_entrys_counters_round_trip():
    stats = RunStatistics()
    stats.count(fake_trainer(), 12, torch.tensor([1.0]), torch.tensor([12.0]), [1.0])
    stats.skipped_updates = 2
    assert stats.state_dict() == {"env_steps": 12, "episodes": 1, "skipped_updates": 2, "return_area": 12.0}
    restored = RunStatistics()
    restored.load_state_dict(stats.state_dict())
    assert restored.state_dict() == stats.state_dict()
    older = RunStatistics()
    older.load_state_dict({"env_steps": 5, "episodes": 1, "skipped_updates": 0})  # before return_area
    assert older.return_area == 0.0 and older.env_steps == 5


def test_many_seeds_aggregate_sums_counts_and_averages_the_rest():
    seeds = [{"train/env_steps": 100, "train/episodes": 4, "train/return_last100": 10.0, "train/loss": torch.tensor(1.0)},
             {"train/env_steps": 300, "train/episodes": 6, "train/loss": torch.tensor(3.0)}]
    assert aggregate(seeds) == {"train/env_steps": 400.0, "train/episodes": 10.0,
                                "train/return_last100": 10.0,  # only the seed that has one
                                "train/loss": 2.0}
