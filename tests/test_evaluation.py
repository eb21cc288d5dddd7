"""Evaluation: deterministic, separately seeded episodes; validate/test loops; videos."""

import importlib.util

import lightning as L
import numpy as np
import pytest
import torch

from pg_lightning import PPO, Reinforce
from pg_lightning.evaluation import evaluate


def test_evaluation_is_repeatable_and_deterministic():
    module = Reinforce(seed=0)
    a = evaluate(module.policy, "CartPole-v1", episodes=4, seed=10)
    b = evaluate(module.policy, "CartPole-v1", episodes=4, seed=10)
    c = evaluate(module.policy, "CartPole-v1", episodes=4, seed=11)
    assert np.array_equal(a["returns"], b["returns"]) and np.array_equal(a["lengths"], b["lengths"])
    assert not np.array_equal(a["returns"], c["returns"])
    assert a["returns"].shape == (4,)
    np.testing.assert_array_equal(a["returns"], a["lengths"])  # CartPole: +1 per step


def test_evaluation_uses_the_deterministic_action_and_frozen_statistics():
    module = PPO("Pendulum-v1", seed=0, normalize_observations=True, n_steps=8)
    module.policy.obs_rms.update(torch.tensor([0.5, 0.1, 2.0]), torch.tensor([0.3, 0.2, 4.0]), 50)
    before = {k: v.clone() for k, v in module.policy.obs_rms.state_dict().items()}
    results = evaluate(module.policy, "Pendulum-v1", episodes=2, seed=0)
    for k, v in module.policy.obs_rms.state_dict().items():
        assert torch.equal(v, before[k])
    # with the mean action the result cannot depend on the exploration noise (log_std)
    with torch.no_grad():
        module.policy.head.log_std.fill_(3.0)
    np.testing.assert_array_equal(evaluate(module.policy, "Pendulum-v1", episodes=2, seed=0)["returns"],
                                  results["returns"])


def test_validate_and_periodic_evaluation_log_val_metrics(quiet_trainer_kwargs):
    module = Reinforce(seed=0, eval_every=2, eval_episodes=3)
    quiet_trainer_kwargs["max_epochs"] = 5
    evaluated = []

    class Count(L.Callback):
        def on_validation_batch_end(self, trainer, *args):
            evaluated.append(trainer.current_epoch)

    trainer = L.Trainer(**quiet_trainer_kwargs, callbacks=[Count()])
    trainer.fit(module)
    assert evaluated == [1, 3]  # after updates 2 and 4, never in the sanity check
    assert trainer.check_val_every_n_epoch == 1  # the Trainer's own setting is left alone
    metrics = trainer.callback_metrics
    for key in ("val/episode_return", "val/episode_return_std", "val/episode_length", "val/env_steps"):
        assert key in metrics, key
    direct = evaluate(module.policy, "CartPole-v1", 3, seed=0 + 1_000_003)
    (validated,) = trainer.validate(module)
    assert validated["val/episode_return"] == pytest.approx(direct["returns"].mean())
    (tested,) = trainer.test(module)
    assert tested["test/episode_return"] == pytest.approx(direct["returns"].mean())


class CountValidation(L.Callback):
    def __init__(self):
        self.runs = 0

    def on_validation_start(self, trainer, module):
        self.runs += 1


@pytest.mark.parametrize("fails", [False, True])
def test_no_evaluation_during_fit_by_default_and_validate_works_after(quiet_trainer_kwargs, fails):
    """A fit without evaluation runs no validation loop at all (the module switches the Trainer's
    limit_val_batches off for the fit): after it, finished or raised, the Trainer's setting is
    back and ``validate`` plays episodes."""
    module = Reinforce(seed=0)
    quiet_trainer_kwargs["max_epochs"] = 2
    count = CountValidation()

    class Fail(L.Callback):
        def on_train_batch_end(self, *args):
            raise RuntimeError("a user's callback failed")

    trainer = L.Trainer(**quiet_trainer_kwargs, callbacks=[count] + ([Fail()] if fails else []))
    if fails:
        with pytest.raises(RuntimeError, match="a user's callback failed"):
            trainer.fit(module)
    else:
        trainer.fit(module)
    assert count.runs == 0
    assert not any(k.startswith("val/") for k in trainer.callback_metrics)
    (validated,) = trainer.validate(module)
    assert count.runs == 1 and trainer.limit_val_batches == 1.0
    direct = evaluate(module.policy, "CartPole-v1", 10, seed=0 + 1_000_003)
    assert validated["val/episode_return"] == pytest.approx(direct["returns"].mean())


@pytest.mark.skipif(importlib.util.find_spec("moviepy") is None, reason="video recording needs moviepy (extra 'video')")
def test_video_of_an_evaluation_episode_is_written(tmp_path):
    module = Reinforce(seed=0)
    results = evaluate(module.policy, "CartPole-v1", episodes=2, seed=0, video_folder=tmp_path, video_prefix="t")
    videos = list(tmp_path.glob("t-episode-0.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    assert not list(tmp_path.glob("t-episode-1*"))  # only the first episode is recorded
    assert results["returns"].shape == (2,)


def test_evaluation_and_play_give_actions_of_a_space_with_start():
    """``Discrete(3, start=-1)`` where only -1 pays: a policy whose first choice dominates plays -1
    deterministically and when sampling (play's two actors), so every step pays."""
    import user_envs

    from pg_lightning.evaluation import play_episode, recorded_env, stochastic_actor

    module = PPO("user_envs:UserEnvs/ShiftedActions-v0", seed=0)
    with torch.no_grad():
        module.policy.actor_out.bias.copy_(torch.tensor([30.0, 0.0, 0.0]))
    results = evaluate(module.policy, "user_envs:UserEnvs/ShiftedActions-v0", episodes=2, seed=0)
    assert results["returns"].tolist() == [user_envs.LENGTH] * 2
    with recorded_env("user_envs:UserEnvs/ShiftedActions-v0", None, None, None) as env:
        assert play_episode(env, stochastic_actor(module.policy, env.action_space, seed=0), seed=0) == (user_envs.LENGTH, 8)


@pytest.mark.filterwarnings("ignore:.*signal to be a boolean")
def test_numpy_integer_done_flags_end_evaluation_episodes():
    import user_envs  # noqa: F401  registers the env

    from pg_lightning.evaluation import play_episode, recorded_env

    with recorded_env("user_envs:UserEnvs/IntFlags-v0", None, None, None) as env:
        total, length = play_episode(env, lambda obs: 0, seed=3)
    assert 1 <= length <= 9 and total == length


def test_wrapper_ended_episodes_are_evaluated_on_the_envs_reward_scale():
    """A reward-scaling wrapper and a TimeLimit that cuts CartPole at 5 steps: the evaluation
    reports the env's own return (5), not the wrapped rewards' (50)."""
    wrappers = [{"class_path": "user_envs.ScaleReward", "init_args": {"factor": 10.0}},
                {"class_path": "gymnasium.wrappers.TimeLimit", "init_args": {"max_episode_steps": 5}}]
    results = evaluate(Reinforce(seed=0).policy, "CartPole-v1", episodes=2, seed=0, wrappers=wrappers)
    assert results["returns"].tolist() == [5.0, 5.0] and results["lengths"].tolist() == [5, 5]
