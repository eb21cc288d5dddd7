"""The Lightning speed paths keep Lightning's behaviour: a CPU batch is not walked, the default
profiler is swapped for a cheaper no-op and a user's kept, and the validation loop is skipped in a
fit that evaluates nothing, then restored (also after a fit that raised)."""

import lightning as L
import pytest
import torch
from helpers import quiet_trainer
from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

from pg_lightning import Reinforce
from pg_lightning.lightning_speed import NoProfiler


def test_a_cpu_batch_is_returned_as_it_is_and_other_batches_go_to_lightning():
    module = Reinforce(seed=0)
    collector = module.make_collector()
    try:
        batch = collector.episodes(module.policy, 1)
    finally:
        collector.close()
    assert module.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    other = {"x": torch.zeros(2)}  # not a pg_lightning Batch: Lightning's move builds a new container
    moved = module.transfer_batch_to_device(other, torch.device("cpu"), 0)
    assert moved is not other and torch.equal(moved["x"], other["x"])


def test_no_profiler_hands_out_one_shared_null_context():
    profiler = NoProfiler()
    assert profiler.profile("a") is profiler.profile("b")
    with profiler.profile("training_step"):
        pass


def test_the_default_profiler_is_swapped_and_a_users_is_kept():
    default = quiet_trainer(max_epochs=1)
    assert type(default.profiler) is PassThroughProfiler
    default.fit(Reinforce(seed=0))
    assert type(default.profiler) is NoProfiler
    mine = SimpleProfiler()
    own = quiet_trainer(max_epochs=1, profiler=mine)
    own.fit(Reinforce(seed=0))
    assert own.profiler is mine


class LimitSeen(L.Callback):
    def __init__(self, fail=False):
        self.seen, self.fail = [], fail

    def on_train_batch_end(self, trainer, *args):
        self.seen.append(trainer.limit_val_batches)
        if self.fail:
            raise RuntimeError("stop here")


@pytest.mark.parametrize("limit", [1.0, 3])
def test_a_fit_without_evaluation_skips_the_validation_loop_and_restores_the_trainers_limit(limit):
    seen = LimitSeen()
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=limit, callbacks=[seen])
    trainer.fit(Reinforce(seed=0))
    assert seen.seen == [0, 0]
    assert trainer.limit_val_batches == limit


def test_a_fit_that_evaluates_keeps_the_validation_loop():
    seen = LimitSeen()
    trainer = quiet_trainer(max_epochs=2, callbacks=[seen])
    trainer.fit(Reinforce(seed=0, eval_every=2, eval_episodes=1))
    assert seen.seen == [1.0, 1.0]
    assert "val/episode_return" in trainer.callback_metrics


def test_after_a_fit_that_raised_validate_plays_episodes():
    module = Reinforce(seed=0, eval_episodes=1)
    trainer = quiet_trainer(max_epochs=2, callbacks=[LimitSeen(fail=True)])
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.fit(module)
    trainer.validate(module, verbose=False)
    assert trainer.limit_val_batches == 1.0
    assert "val/episode_return" in trainer.callback_metrics
