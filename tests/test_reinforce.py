"""Reinforce as a LightningModule: the seed's loss and gradient, a user's own Trainer, checkpoints."""

import csv

import lightning as L
import pytest
import torch
from helpers import assert_same_gradients

from pg_lightning import Reinforce
from pg_lightning.errors import ConfigError
from pg_lightning.returns import discounted_returns


def seed_loss(policy, batch, gamma=0.99):
    """The seed's loop: returns G_t = r_t + γ G_{t+1}, normalised, one graph per step."""
    rewards = batch.rewards.flatten().tolist()
    returns, g = [], 0.0
    for r in reversed(rewards):
        g = r + gamma * g
        returns.insert(0, g)
    returns = torch.tensor(returns)
    returns = (returns - returns.mean()) / (returns.std() + 1e-9)
    loss = 0.0
    for t in range(len(rewards)):
        logits = policy.actor_out(policy.trunk(batch.observations[t, 0]))
        dist = torch.distributions.Categorical(logits=logits)
        loss = loss + (-dist.log_prob(batch.actions[t, 0]) * returns[t])
    return loss


def one_episode_batch(module):
    collector = module.make_collector()
    batch = collector.episodes(module.policy, 1)
    collector.close()
    return batch


def test_defaults_are_the_seed_recipe():
    module = Reinforce()
    hp = module.hparams
    assert (hp.env_id, hp.lr, hp.gamma, hp.episodes_per_batch) == ("CartPole-v1", 1e-2, 0.99, 1)
    assert hp.normalize_returns and hp.reduction == "sum" and hp.baseline == "none"
    layers = [type(m).__name__ for m in module.policy.trunk] + ["Linear"]
    assert layers == ["Linear", "ReLU", "Linear"]
    assert module.policy.trunk[0].in_features == 4 and module.policy.actor_out.out_features == 2
    assert module.policy.trunk[0].out_features == 128 and not module.policy.has_critic
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)


def test_loss_and_gradient_match_the_seed_per_step_version():
    module = Reinforce(seed=3)
    batch = one_episode_batch(module)
    assert batch.observations.shape[0] > 5
    ours = module.compute_losses(batch)["loss"]
    theirs = seed_loss(module.policy, batch)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert_same_gradients(module, ours, theirs)


def test_flags_change_the_loss():
    base = dict(seed=1)
    batch = one_episode_batch(Reinforce(**base))
    loss = lambda **kw: Reinforce(**base, **kw).compute_losses(batch)["loss"]  # noqa: E731
    reference = loss()
    for flags in (dict(normalize_returns=False), dict(reduction="mean"), dict(entropy_coef=0.1),
                  dict(gamma=0.5), dict(baseline="value")):
        assert not torch.allclose(loss(**flags), reference), flags
    # "mean" baseline only shifts un-normalised returns; with normalisation it changes nothing
    torch.testing.assert_close(loss(baseline="mean"), reference)
    assert not torch.allclose(loss(baseline="mean", normalize_returns=False), loss(normalize_returns=False))


def test_value_baseline_uses_detached_values_and_trains_the_critic_on_returns():
    module = Reinforce(baseline="value", seed=0, value_coef=1.0)
    batch = one_episode_batch(module)
    terms = module.compute_losses(batch)
    returns = discounted_returns(batch.rewards, batch.terminated, batch.truncated, 0.99).flatten()
    values = module.policy.value(batch.observations.flatten(0, 1))
    torch.testing.assert_close(terms["value_loss"], 0.5 * ((values - returns) ** 2).mean())
    module.zero_grad()
    terms["policy_loss"].backward()
    assert all(p.grad is None for p in module.policy.critic_trunk.parameters())


def read_csv(logger):
    with open(f"{logger.log_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


def test_fits_in_a_users_own_trainer_and_logs_the_metrics(quiet_trainer_kwargs):
    module = Reinforce(seed=0, episodes_per_batch=2)
    before = [p.detach().clone() for p in module.parameters()]
    quiet_trainer_kwargs["max_epochs"] = 5
    trainer = L.Trainer(**quiet_trainer_kwargs)
    trainer.fit(module)
    rows = read_csv(trainer.logger)
    assert len(rows) == 5  # one row per update
    expected = {"train/episode_return", "train/episode_length", "train/return_last100", "train/loss",
                "train/entropy", "train/env_steps", "train/episodes", "train/steps_per_second"}
    assert expected <= set(rows[0])
    steps = [int(float(r["train/env_steps"])) for r in rows]
    assert steps == sorted(steps) and steps[-1] == module.env_steps
    assert [int(float(r["train/episodes"])) for r in rows] == [2, 4, 6, 8, 10]
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert "train/return_last100" in trainer.progress_bar_metrics


def test_env_step_budget_ends_training(quiet_trainer_kwargs):
    module = Reinforce(seed=0, max_env_steps=300)
    trainer = L.Trainer(**quiet_trainer_kwargs)
    trainer.fit(module)
    assert 300 <= module.env_steps < 300 + 500
    assert trainer.current_epoch == module.episodes  # one episode per update


def test_checkpoint_round_trip_and_resume(tmp_path, quiet_trainer_kwargs):
    module = Reinforce(seed=2)
    quiet_trainer_kwargs["max_epochs"] = 3
    returns = []  # what the episodes of the first run returned, seen from outside the collector

    class Returns(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            returns.extend(batch.episode_returns.tolist())

    trainer = L.Trainer(**quiet_trainer_kwargs, callbacks=[Returns()])
    trainer.fit(module)
    path = tmp_path / "a.ckpt"
    trainer.save_checkpoint(path)

    loaded = Reinforce.load_from_checkpoint(path)
    for a, b in zip(module.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert (loaded.env_steps, loaded.episodes) == (module.env_steps, module.episodes)
    assert loaded.hparams.seed == 2

    quiet_trainer_kwargs["max_epochs"] = 5
    resumed_trainer = L.Trainer(**quiet_trainer_kwargs)
    resumed = Reinforce(seed=2)
    resumed_trainer.fit(resumed, ckpt_path=path)
    assert resumed.episodes == 5  # continued from 3, not restarted
    saved = torch.load(path, weights_only=False)
    assert saved["optimizer_states"][0]["state"]  # Adam moments are in the checkpoint
    window = saved["pg_lightning"]["processes"][0]["collector"]["recent_returns"]
    assert len(window) == 3 and window == pytest.approx(returns)  # the three episodes' returns
    assert list(resumed.agents[0].collector_state["recent_returns"])[:3] == window  # the resumed run extends the window
    assert resumed.env_steps > module.env_steps


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(env_id="NoSuchEnv-v0"), "unknown env_id 'NoSuchEnv-v0'"),
        (dict(gamma=1.5), "gamma must be in [0, 1], got 1.5"),
        (dict(gamma=-0.1), "gamma must be in [0, 1], got -0.1"),
        (dict(lr=0.0), "lr must be > 0, got 0.0"),
        (dict(lr=-1e-3), "lr must be > 0"),
        (dict(episodes_per_batch=0), "episodes_per_batch must be >= 1, got 0"),
        (dict(hidden_sizes=[128, 0]), "hidden_sizes must be positive integers, got [128, 0]"),
        (dict(activation="sigmoidish"), "activation must be one of"),
        (dict(reduction="max"), "reduction must be 'sum' or 'mean'"),
        (dict(baseline="median"), "baseline must be none, mean or value"),
        (dict(num_envs=0), "num_envs must be >= 1, got 0"),
        (dict(env_id="no_such_package:Maze-v0"), "cannot import module 'no_such_package'"),
        (dict(wrappers=["gymnasium.wrappers.NoSuchWrapper"]), "wrappers: cannot import 'gymnasium.wrappers.NoSuchWrapper'"),
        (dict(wrappers=[{"class_path": "gymnasium.wrappers.ClipReward", "init_args": {"low": 0}}]),
         "wrappers: bad init_args {'low': 0} for gymnasium.wrappers.ClipReward"),
        (dict(network="collections.OrderedDict"), "network: collections.OrderedDict is not a torch.nn.Module"),
        (dict(network={"class_path": "torch.nn.Linear", "init_args": {"in_features": 3, "out_features": 8}}),
         "mat1 and mat2 shapes cannot be multiplied"),
        (dict(env_id="CartPole-v1", env_kwargs=dict(nonsense=1)), "bad env_kwargs"),
        (dict(anneal_lr=True), "anneal_lr needs max_env_steps"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, message):
    with pytest.raises(ConfigError) as err:
        Reinforce(**kwargs)
    assert message in str(err.value)
