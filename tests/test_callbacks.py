"""The run's callbacks on stand-in Trainers and modules: StopWhenSolved's threshold, episode minimum
and monitor; RunCheckpoint's cadence of saves and its cached state key. Their end-to-end uses:
test_path_own_trainer.py, test_path_cli.py, test_path_resume.py."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from pg_lightning import RunCheckpoint, StopWhenSolved


def run(threshold=None, reward_threshold=475.0, **stop_kwargs):
    """A StopWhenSolved after on_train_start; ``after(return_last100, episodes, metrics)`` -> whether it stopped."""
    stop = StopWhenSolved(threshold, **stop_kwargs)
    module = SimpleNamespace(env_spec=SimpleNamespace(reward_threshold=reward_threshold), env_steps=0, episodes=0,
                             return_last100=None, hparams=SimpleNamespace(env_id="Test-v0"))
    stop.on_train_start(None, module)

    def after(return_last100, episodes, metrics=None, env_steps=1000):
        trainer = SimpleNamespace(should_stop=False, callback_metrics=metrics or {})
        module.return_last100, module.episodes, module.env_steps = return_last100, episodes, env_steps
        stop.on_train_batch_end(trainer, module, None, None, 0)
        return trainer.should_stop

    return stop, after


def test_the_threshold_defaults_to_the_envs_reward_threshold():
    stop, after = run()
    assert stop.threshold == 475.0
    assert not after(474.9, 500)
    assert after(475.0, 500, env_steps=1234) and stop.solved_at == 1234  # reaching it is enough


def test_no_stop_before_min_episodes_or_without_a_return():
    stop, after = run(threshold=10.0, min_episodes=100)
    assert not after(50.0, 99)
    assert not after(None, 150)
    assert stop.solved_at is None
    assert after(50.0, 100)


def test_a_monitor_is_read_from_the_callback_metrics():
    stop, after = run(threshold=5.0, monitor="val/episode_return", min_episodes=0)
    assert not after(100.0, 10)  # the module's return_last100 is not the monitor
    assert not after(100.0, 10, {"val/episode_return": torch.tensor(4.0)})
    assert after(0.0, 10, {"val/episode_return": torch.tensor(5.0)})


def test_an_env_without_a_reward_threshold_never_stops():
    with pytest.warns(UserWarning, match="Test-v0 has no reward_threshold; StopWhenSolved is off"):
        stop, after = run(reward_threshold=None)
    assert stop.threshold is None and not after(1e9, 10**6)


def test_an_explicit_threshold_wins_over_the_envs():
    stop, after = run(threshold=100.0)
    assert stop.threshold == 100.0 and after(100.0, 100)


@pytest.mark.parametrize("every, save_last, epochs", [(3, True, [2, 5]), (1, True, list(range(7))),
                                                     (3, "link", list(range(7))), (0, True, [])])
def test_run_checkpoint_saves_on_its_cadence_only(every, save_last, epochs, monkeypatch):
    called = []
    monkeypatch.setattr(ModelCheckpoint, "on_train_epoch_end", lambda self, trainer, module: called.append(trainer.current_epoch))
    checkpoint = RunCheckpoint(every_n_epochs=every, save_last=save_last)
    for epoch in range(7):
        checkpoint.on_train_epoch_end(SimpleNamespace(current_epoch=epoch), None)
    assert called == epochs


def test_run_checkpoint_saves_after_updates_by_default():
    assert RunCheckpoint()._save_on_train_epoch_end is True
    assert RunCheckpoint(save_on_train_epoch_end=False)._save_on_train_epoch_end is False


def test_run_checkpoints_cached_state_key_follows_its_arguments():
    checkpoint = RunCheckpoint(monitor="train/return_last100", every_n_epochs=2)

    def fresh():  # ModelCheckpoint's own key, computed anew
        return ModelCheckpoint.state_key.fget(checkpoint)

    first = checkpoint.state_key
    assert first == fresh() and "'monitor': 'train/return_last100'" in first
    checkpoint.monitor, checkpoint._every_n_epochs = "train/loss", 5
    assert checkpoint.state_key == fresh() != first
    assert "'monitor': 'train/loss'" in checkpoint.state_key and "'every_n_epochs': 5" in checkpoint.state_key
