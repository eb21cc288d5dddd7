"""What A2C and PPO share (modules/actor_critic.py): rollouts, bootstrapping at episode ends and
masking of autoreset steps, normalisation statistics in checkpoints, action and observation
spaces, bad settings. A2C's own loss: test_a2c.py; PPO's update: test_ppo.py."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import A2C_BASE, PPO_BASE, PerUpdate, RecordBatches, column, fit, fit_on_batch, hand_made_batch, params, read_csv, same_params
from helpers import quiet_trainer as trainer
from torch.distributions import Categorical, Normal

from pg_lightning import A2C, PPO
from pg_lightning.errors import ConfigError


# ---- tiny custom envs ---------------------------------------------------------------------------
class EchoBoxEnv(gym.Env):
    """2-D Box actions in [-0.5, 0.5]; the next observation echoes the action the env received
    and the reward is its first component, so a test can see what reached ``step``."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-0.5, 0.5, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-0.1, 0.1, 3).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        action = np.asarray(action, dtype=np.float32)
        obs = np.array([action[0], action[1], self.t / 10.0], dtype=np.float32)
        return obs, float(action[0]), self.t >= 5, False, {}


class PickEnv(gym.Env):
    """MultiDiscrete([3, 2]) actions, reward 1 for the action (2, 0), episodes of 6 steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([3, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float(action[0] == 2 and action[1] == 0)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), reward, self.t >= 6, False, {}


def _space_env(observation_space, action_space):
    class SpaceEnv(gym.Env):
        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, True, False, {}

    SpaceEnv.observation_space, SpaceEnv.action_space = observation_space, action_space
    return SpaceEnv


BOX_OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


CUSTOM_ENVS = {
    "PGLTest/EchoBox-v0": EchoBoxEnv,
    "PGLTest/Pick-v0": PickEnv,
    "PGLTest/DictAction-v0": _space_env(
        BOX_OBS, gym.spaces.Dict({"a": gym.spaces.Discrete(2), "b": gym.spaces.Discrete(3)})
    ),
    "PGLTest/TupleAction-v0": _space_env(BOX_OBS, gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))),
    "PGLTest/MultiBinaryAction-v0": _space_env(BOX_OBS, gym.spaces.MultiBinary(3)),
    "PGLTest/TextObs-v0": _space_env(gym.spaces.Dict({"x": BOX_OBS, "note": gym.spaces.Text(4)}), gym.spaces.Discrete(2)),
}


for _id, _cls in CUSTOM_ENVS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_cls)


# ---- bootstrapping and masking --------------------------------------------------------------
def a2c_for_masking():
    return A2C(seed=1, num_envs=2, gamma=0.9, gae_lambda=0.7, entropy_coef=0.01)


def all_terms(module, batch):
    with torch.no_grad():
        terms = module.compute_losses(batch)
        _, _, values = module.policy.evaluate(batch.observations.flatten(0, 1), batch.actions.flatten(0, 1))
        advantages, _ = module.advantages(batch, values.view_as(batch.rewards))
    return terms, advantages


def test_truncated_and_tail_steps_bootstrap_from_the_next_observation():
    module = a2c_for_masking()
    batch = hand_made_batch()
    base_terms, base_adv = all_terms(module, batch)
    for t, n in [(1, 0), (3, 0), (3, 1)]:  # truncated; the rollout's tail in both columns
        changed = hand_made_batch()
        changed.next_observations[t, n] += 3.0
        terms, adv = all_terms(module, changed)
        assert not torch.allclose(adv[t, n], base_adv[t, n]), (t, n)
        assert not torch.allclose(terms["loss"], base_terms["loss"]), (t, n)
        # only the episode that step belongs to is affected
        other = 1 - n
        torch.testing.assert_close(adv[:, other], base_adv[:, other])


def test_terminated_step_does_not_bootstrap():
    module = a2c_for_masking()
    base_terms, base_adv = all_terms(module, hand_made_batch())
    changed = hand_made_batch()
    changed.next_observations[0, 1] += 3.0  # terminated step of column 1
    terms, adv = all_terms(module, changed)
    torch.testing.assert_close(adv, base_adv, rtol=0, atol=0)
    for key in base_terms:
        torch.testing.assert_close(terms[key], base_terms[key], rtol=0, atol=0, equal_nan=True)


def test_nothing_flows_across_an_episode_boundary():
    module = a2c_for_masking()
    _, base_adv = all_terms(module, hand_made_batch())
    changed = hand_made_batch()
    changed.rewards[3, 0] += 5.0  # the next episode of column 0
    _, adv = all_terms(module, changed)
    torch.testing.assert_close(adv[:2, 0], base_adv[:2, 0], rtol=0, atol=0)  # truncation cut the recursion
    assert not torch.allclose(adv[3, 0], base_adv[3, 0])


@pytest.mark.parametrize("field", ["observations", "actions", "rewards", "next_observations"])
def test_masked_autoreset_steps_do_not_change_the_loss(field):
    module = a2c_for_masking()
    base_terms, _ = all_terms(module, hand_made_batch())
    changed = hand_made_batch()
    values = getattr(changed, field)
    for t, n in [(2, 0), (1, 1)]:  # the autoreset steps
        if field == "actions":
            values[t, n] = 1 - values[t, n]
        else:
            values[t, n] += 7.0
    terms, _ = all_terms(module, changed)
    for key in base_terms:
        torch.testing.assert_close(terms[key], base_terms[key], rtol=1e-6, atol=1e-7, msg=key)


ONE_UPDATE = {
    A2C: dict(seed=1, num_envs=2, gamma=0.9, gae_lambda=0.7, entropy_coef=0.01, lr=1e-2,
              normalize_advantages=True),
    PPO: dict(seed=1, num_envs=2, gamma=0.9, gae_lambda=0.7, entropy_coef=0.01, lr=1e-2,
              update_epochs=2, minibatch_size=3, clip_range_vf=0.1),
}


@pytest.mark.parametrize("cls", [A2C, PPO])
def test_one_update_bootstraps_truncation_and_ignores_masked_steps(cls):
    def update(change=None):
        batch = hand_made_batch()
        if change is not None:
            change(batch)
        return params(fit_on_batch(cls, batch, **ONE_UPDATE[cls]))

    def add(field, t, n, value):
        return lambda b: getattr(b, field)[t, n].add_(value)

    before = params(cls(**ONE_UPDATE[cls]))
    reference = update()
    assert not same_params(before, reference)
    assert same_params(reference, update())  # deterministic, so equality below is meaningful

    def flip_masked_actions(b):
        b.actions[2, 0] = 1 - b.actions[2, 0]
        b.actions[1, 1] = 1 - b.actions[1, 1]

    unchanged = [add("next_observations", 0, 1, 3.0), flip_masked_actions]  # terminated; masked
    for field in ("observations", "rewards", "next_observations"):
        unchanged += [add(field, 2, 0, 7.0), add(field, 1, 1, 7.0)]  # the autoreset steps
    for change in unchanged:
        for a, b in zip(reference, update(change)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for change in (add("next_observations", 1, 0, 3.0), add("rewards", 0, 0, 1.0)):  # truncated; real
        assert not same_params(reference, update(change))


@pytest.mark.parametrize("cls", [A2C, PPO])
def test_a_rollout_of_autoreset_steps_only_is_no_update_and_no_skipped_update(cls):
    module = cls(env_id="PGLTest/Counter-v0", env_kwargs={"max_length": 1}, num_envs=1, n_steps=1, seed=0,
                 **({"minibatch_size": None} if cls is PPO else {}))
    seen = PerUpdate()
    trainer(max_epochs=6, callbacks=[seen]).fit(module)
    assert module.skipped_updates == 0
    assert seen.env_steps == [1, 1, 2, 2, 3, 3]  # every other rollout is an autoreset step alone


# ---- both algorithms -------------------------------------------------------------------------
def test_same_seed_gives_the_same_update():
    a, b = A2C(**A2C_BASE), A2C(**A2C_BASE)
    fit(a, 2)
    fit(b, 2)
    assert same_params(params(a), params(b))
    c, d = PPO(**PPO_BASE), PPO(**PPO_BASE)
    fit(c, 1)
    fit(d, 1)
    assert same_params(params(c), params(d))


@pytest.mark.parametrize("cls, base", [(A2C, A2C_BASE), (PPO, PPO_BASE)], ids=["A2C", "PPO"])
def test_anneal_lr_decreases_the_logged_learning_rate(tmp_path, cls, base):
    module = cls(**{**base, "anneal_lr": True, "max_env_steps": 400})
    rows = read_csv(fit(module, 4, tmp_path))
    lrs = column(rows, "train/learning_rate")
    steps = [0.0] + column(rows, "train/env_steps")
    assert len(lrs) == 4 and lrs[0] == pytest.approx(base["lr"])
    assert all(b < a for a, b in zip(lrs, lrs[1:])), lrs
    # linear in the env steps done before each update
    assert lrs == pytest.approx([base["lr"] * (1 - s / 400) for s in steps[:-1]])


@pytest.mark.parametrize("cls", [A2C, PPO])
def test_shared_and_separate_critics_have_different_parameter_sets(cls):
    separate, shared = cls(seed=0, critic="separate"), cls(seed=0, critic="shared")
    sep_names = {n for n, _ in separate.named_parameters()}
    shared_names = {n for n, _ in shared.named_parameters()}
    assert any(n.startswith("policy.critic_trunk.") for n in sep_names)
    assert not any("critic_trunk" in n for n in shared_names)
    assert shared_names < sep_names
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(shared) < count(separate)
    # the shared value head sits on the actor's trunk: a value loss moves the trunk
    obs = torch.randn(8, 4)
    shared.policy.value(obs).pow(2).sum().backward()
    assert shared.policy.trunk[0].weight.grad is not None
    separate.policy.value(obs).pow(2).sum().backward()
    assert separate.policy.trunk[0].weight.grad is None


# ---- normalisation statistics -------------------------------------------------------------
def running_returns_loop(batches, gamma):
    """R_t = r_t + γ R_{t-1} per column over consecutive batches, restarted after each done."""
    rewards = torch.cat([b.rewards for b in batches]).double()
    done = torch.cat([b.terminated | b.truncated for b in batches])
    out = torch.zeros_like(rewards)
    for n in range(rewards.shape[1]):
        running, previous_done = 0.0, False
        for t in range(rewards.shape[0]):
            running = float(rewards[t, n]) + (0.0 if previous_done else gamma * running)
            out[t, n] = running
            previous_done = bool(done[t, n])
    return out


@pytest.mark.parametrize("cls", [A2C, PPO])
@pytest.mark.parametrize(
    "env_id, n_steps",
    [("CartPole-v1", 32), ("PGLTest/Pick-v0", 6)],  # Pick: the first batch ends on episode ends
)
def test_normalisation_statistics_are_those_of_the_collected_data_and_checkpointed(tmp_path, cls, env_id, n_steps):
    kwargs = dict(env_id=env_id, seed=5, num_envs=4, n_steps=n_steps, gamma=0.9,
                  normalize_observations=True, normalize_rewards=True)
    if cls is PPO:
        kwargs.update(update_epochs=1, minibatch_size=None)
    module = cls(**kwargs)
    recorder = RecordBatches()
    trainer = fit(module, 3, callbacks=[recorder])
    batches = recorder.batches
    assert len(batches) == 3 and any((~b.mask).any() for b in batches)  # some autoreset steps
    if env_id == "PGLTest/Pick-v0":
        assert (batches[0].terminated[-1]).all() and batches[0].rewards.sum() > 0

    observations = torch.cat([b.observations[b.mask] for b in batches]).double()
    rms = module.policy.obs_rms
    assert float(rms.count) == observations.shape[0]
    torch.testing.assert_close(rms.mean.double(), observations.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rms.var.double(), observations.var(0, correction=0), rtol=1e-4, atol=1e-5)

    sums = running_returns_loop(batches, 0.9)
    mask = torch.cat([b.mask for b in batches])
    real = sums[mask]
    scaler = module.normalizer.rewards
    assert float(scaler.count) == real.numel()
    torch.testing.assert_close(scaler.mean.double(), real.mean(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(scaler.var.double(), real.var(correction=0), rtol=1e-4, atol=1e-5)
    last = torch.cat([b.terminated | b.truncated for b in batches])[-1]
    torch.testing.assert_close(module.normalizer.running_return, (sums[-1] * (~last).double()).float())

    path = tmp_path / "stats.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    for key in ("policy.obs_rms.mean", "policy.obs_rms.var", "policy.obs_rms.count",
                "normalizer.rewards.mean", "normalizer.rewards.var", "normalizer.rewards.count"):
        assert key in state, key
    assert torch.equal(state["policy.obs_rms.mean"], rms.mean)
    assert torch.equal(state["normalizer.rewards.var"], scaler.var)

    loaded = cls.load_from_checkpoint(path)
    for name in ("mean", "var", "count"):
        assert torch.equal(getattr(loaded.policy.obs_rms, name), getattr(rms, name)), name
        assert torch.equal(getattr(loaded.normalizer.rewards, name), getattr(scaler, name)), name
    # a resumed run restarts every episode, and with them the running return (not the saved one)
    assert module.normalizer.running_return.abs().sum() > 0
    assert torch.equal(loaded.normalizer.running_return, torch.zeros_like(module.normalizer.running_return))
    obs = torch.randn(5, observations.shape[1]) * 3
    torch.testing.assert_close(loaded.policy.value(obs), module.policy.value(obs))
    # a fresh module with the same settings starts from neutral statistics, so they did load
    fresh = cls(**kwargs)
    assert not torch.equal(fresh.policy.obs_rms.mean, loaded.policy.obs_rms.mean)


# ---- continuous and multi-discrete actions ------------------------------------------------
@pytest.mark.parametrize("cls", [A2C, PPO])
def test_fits_pendulum_with_box_actions(cls):
    module = cls(env_id="Pendulum-v1", seed=0, num_envs=2, n_steps=16, lr=1e-3,
                 **({"update_epochs": 2, "minibatch_size": 16} if cls is PPO else {}))
    assert type(module.policy.head).__name__ == "GaussianHead"
    before = params(module)
    log_std_before = module.policy.head.log_std.detach().clone()
    recorder = RecordBatches()
    fit(module, 2, callbacks=[recorder])
    batch = recorder.batches[0]
    assert batch.actions.shape == (16, 2, 1) and batch.actions.dtype == torch.float32
    assert module.env_steps == 64
    assert not same_params(before, params(module))
    assert not torch.equal(module.policy.head.log_std.detach(), log_std_before)


@pytest.mark.parametrize("cls", [A2C, PPO])
def test_box_actions_are_recorded_raw_but_clipped_for_the_env(cls):
    module = cls(env_id="PGLTest/EchoBox-v0", seed=0, num_envs=2, n_steps=10, log_std_init=1.0,
                 **({"minibatch_size": None, "update_epochs": 1} if cls is PPO else {}))
    recorder = RecordBatches()
    fit(module, 1, callbacks=[recorder])
    batch = recorder.batches[0]
    real = batch.mask
    raw = batch.actions[real]
    assert (raw.abs() > 0.5).any()  # samples beyond the bounds are kept as sampled
    received = batch.next_observations[real][:, :2]
    torch.testing.assert_close(received, raw.clamp(-0.5, 0.5))
    torch.testing.assert_close(batch.rewards[real], raw[:, 0].clamp(-0.5, 0.5))

    # the log-probability in the loss is that of the raw sample
    policy = module.policy
    obs, actions = batch.observations.flatten(0, 1), batch.actions.flatten(0, 1)
    log_probs, _, _ = policy.evaluate(obs, actions)
    dist = Normal(policy.actor_out(policy.trunk(obs)), policy.head.log_std.exp())
    torch.testing.assert_close(log_probs, dist.log_prob(actions).sum(-1))
    assert not torch.allclose(log_probs, dist.log_prob(actions.clamp(-0.5, 0.5)).sum(-1))
    if cls is A2C:
        with torch.no_grad():
            values = policy.value(obs).view_as(batch.rewards)
            advantages, _ = module.advantages(batch, values)
            expected = -(dist.log_prob(actions).sum(-1)[real.flatten()] * advantages.flatten()[real.flatten()]).mean()
            torch.testing.assert_close(module.compute_losses(batch)["policy_loss"], expected)


@pytest.mark.parametrize("cls", [A2C, PPO])
def test_fits_a_multidiscrete_env(cls):
    module = cls(env_id="PGLTest/Pick-v0", seed=0, num_envs=2, n_steps=12, lr=1e-2,
                 **({"update_epochs": 2, "minibatch_size": 12} if cls is PPO else {}))
    before = params(module)
    recorder = RecordBatches()
    fit(module, 2, callbacks=[recorder])
    batch = recorder.batches[0]
    assert batch.actions.shape == (12, 2, 2)
    assert (batch.actions[..., 0] < 3).all() and (batch.actions[..., 1] < 2).all() and (batch.actions >= 0).all()
    assert len(torch.unique(batch.actions[..., 0])) > 1
    assert not same_params(before, params(module))
    policy = module.policy
    obs, actions = batch.observations.flatten(0, 1), batch.actions.flatten(0, 1)
    log_probs, entropy, _ = policy.evaluate(obs, actions)
    logits = policy.actor_out(policy.trunk(obs))
    first, second = Categorical(logits=logits[:, :3]), Categorical(logits=logits[:, 3:])
    torch.testing.assert_close(log_probs, first.log_prob(actions[:, 0]) + second.log_prob(actions[:, 1]))
    torch.testing.assert_close(entropy, first.entropy() + second.entropy())


# ---- unsupported spaces -------------------------------------------------------------------
@pytest.mark.parametrize("cls", [A2C, PPO])
@pytest.mark.parametrize(
    "env_id, message",
    [
        ("PGLTest/TextObs-v0", "unsupported observation space Text(1, 4"),
        ("PGLTest/DictAction-v0", "unsupported action space Dict"),
        ("PGLTest/TupleAction-v0", "unsupported action space Tuple"),
        ("PGLTest/MultiBinaryAction-v0", "unsupported action space MultiBinary"),
    ],
)
def test_unsupported_spaces_raise_config_error_naming_the_space(cls, env_id, message):
    with pytest.raises(ConfigError) as err:
        cls(env_id=env_id)
    assert message in str(err.value)


# ---- bad settings ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (A2C, dict(n_steps=0), "n_steps must be >= 1, got 0"),
        (PPO, dict(n_steps=0), "n_steps must be >= 1, got 0"),
        (A2C, dict(gae_lambda=1.5), "gae_lambda must be in [0, 1], got 1.5"),
        (PPO, dict(gae_lambda=1.5), "gae_lambda must be in [0, 1], got 1.5"),
        (PPO, dict(gae_lambda=-0.1), "gae_lambda must be in [0, 1], got -0.1"),
        (PPO, dict(update_epochs=0), "update_epochs must be >= 1, got 0"),
        (PPO, dict(minibatch_size=0), "minibatch_size must be >= 1 or None, got 0"),
        (PPO, dict(clip_range=0), "clip_range must be > 0, got 0"),
        (PPO, dict(clip_range_vf=0.0), "clip_range_vf must be > 0 or None, got 0.0"),
        (PPO, dict(target_kl=-1), "target_kl must be > 0 or None, got -1"),
        (A2C, dict(critic="none"), "critic="),
        (PPO, dict(critic="none"), "critic="),
        (A2C, dict(critic="bogus"), "'bogus'"),
        (A2C, dict(anneal_lr=True), "anneal_lr needs max_env_steps"),
        (PPO, dict(anneal_lr=True), "anneal_lr needs max_env_steps"),
        (PPO, dict(anneal_clip_range=True), "anneal_clip_range needs max_env_steps"),
        (A2C, dict(max_grad_norm=0), "max_grad_norm must be > 0 or None, got 0"),
        (PPO, dict(entropy_coef=-0.1), "entropy_coef must be >= 0, got -0.1"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_value(cls, kwargs, message):
    with pytest.raises(ConfigError) as err:
        cls(**kwargs)
    assert message in str(err.value)
