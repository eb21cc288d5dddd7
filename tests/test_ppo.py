"""PPO's update: the minibatch loss re-derived by hand, the rollout split into minibatches,
the update's stages (epochs, early stop on the KL, the annealed clip range) and what each flag
changes."""

import math

import pytest
import torch
from helpers import PPO_BASE, assert_same_gradients, column, fit, params, read_csv, reference_value, same_params
from torch.distributions import Categorical

from pg_lightning import PPO
from pg_lightning.modules.ppo import Transitions


# ---- the minibatch loss -------------------------------------------------------------------
def ppo_minibatch(module, seed=0, size=48):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(size, 4, generator=g)
    actions = torch.randint(0, 2, (size,), generator=g)
    with torch.no_grad():
        log_probs, _, values = module.policy.evaluate(obs, actions)
    old_log_probs = log_probs + 0.3 * torch.randn(size, generator=g)
    old_values = values + 0.2 * torch.randn(size, generator=g)
    advantages = 2.0 * torch.randn(size, generator=g) + 0.5
    returns = torch.randn(size, generator=g)
    return Transitions(obs, actions, old_log_probs, old_values, advantages, returns)


def test_transitions_split_gives_the_minibatches_of_tensor_split():
    data = ppo_minibatch(PPO(seed=0), size=10)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    parts = data.select(order).split(3)
    assert [len(p) for p in parts] == [4, 3, 3]
    for part, index in zip(parts, order.tensor_split(3)):
        assert all(torch.equal(a, b) for a, b in zip(part, data.select(index)))


def reference_ppo(module, obs, actions, old_log_probs, old_values, advantages, returns, clip_range):
    hp, policy = module.hparams, module.policy
    dist = Categorical(logits=policy.actor_out(policy.trunk(obs)))
    log_probs = dist.log_prob(actions)
    values = reference_value(policy, obs)
    if hp.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = torch.exp(log_probs - old_log_probs)
    surrogate = torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages)
    value_sq = (values - returns) ** 2
    if hp.clip_range_vf is not None:
        clipped = old_values + torch.clamp(values - old_values, -hp.clip_range_vf, hp.clip_range_vf)
        value_sq = torch.max(value_sq, (clipped - returns) ** 2)
    terms = {
        "policy_loss": -surrogate.mean(),
        "value_loss": 0.5 * value_sq.mean(),
        "entropy": dist.entropy().mean(),
        "approx_kl": ((ratio - 1) - torch.log(ratio)).mean().detach(),
        "clip_fraction": ((ratio - 1).abs() > clip_range).float().mean(),
    }
    terms["loss"] = terms["policy_loss"] + hp.value_coef * terms["value_loss"] - hp.entropy_coef * terms["entropy"]
    return terms


@pytest.mark.parametrize("clip_range_vf", [None, 0.05])
@pytest.mark.parametrize("normalize_advantages", [True, False])
@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_ppo_minibatch_losses_match_a_rederivation(clip_range_vf, normalize_advantages, critic):
    module = PPO(seed=2, clip_range_vf=clip_range_vf, normalize_advantages=normalize_advantages,
                 critic=critic, value_coef=0.6, entropy_coef=0.02)
    data = ppo_minibatch(module)
    ours = module.minibatch_losses(data, clip_range=0.15)
    theirs = reference_ppo(module, *data, clip_range=0.15)
    assert set(theirs) <= set(ours)
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6, msg=key)
    assert 0 < float(ours["clip_fraction"]) < 1  # the example exercises both sides of the clip
    if clip_range_vf is not None:  # and value clipping actually bites
        unclipped = 0.5 * ((reference_value(module.policy, data[0]) - data[5]) ** 2).mean()
        assert ours["value_loss"].item() > unclipped.item() + 1e-4
    assert_same_gradients(module, ours["loss"], theirs["loss"])


def test_ppo_at_the_old_policy_has_no_clipping_and_zero_kl():
    module = PPO(seed=4, clip_range_vf=0.1)
    obs, actions, _, _, advantages, returns = ppo_minibatch(module)
    with torch.no_grad():
        log_probs, _, values = module.policy.evaluate(obs, actions)
    terms = module.minibatch_losses(Transitions(obs, actions, log_probs, values, advantages, returns), clip_range=0.2)
    assert float(terms["clip_fraction"]) == 0.0
    torch.testing.assert_close(terms["approx_kl"], torch.tensor(0.0), rtol=0, atol=1e-7)
    # at ratio 1 the surrogate is -mean(normalised advantages) = 0, value clipping is inactive
    torch.testing.assert_close(terms["policy_loss"], torch.tensor(0.0), rtol=0, atol=1e-6)
    torch.testing.assert_close(terms["value_loss"], 0.5 * ((values - returns) ** 2).mean())


def test_ppo_training_step_logs_its_metrics(tmp_path):
    module = PPO(seed=0, num_envs=2, n_steps=16, update_epochs=3, minibatch_size=10)
    before = params(module)
    trainer = fit(module, 3, tmp_path)
    rows = read_csv(trainer)
    assert len(rows) == 3
    expected = {"train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl",
                "train/clip_fraction", "train/explained_variance", "train/learning_rate",
                "train/loss", "train/updates", "train/env_steps", "train/return_last100"}
    assert expected <= set(rows[0]), expected - set(rows[0])
    for key in expected - {"train/return_last100"}:
        values = column(rows, key)
        assert len(values) == 3 and all(math.isfinite(v) for v in values), key
    assert column(rows, "train/learning_rate") == pytest.approx([2.5e-4] * 3)
    assert all(0 <= v <= 1 for v in column(rows, "train/clip_fraction"))
    assert all(v >= -1e-6 for v in column(rows, "train/approx_kl"))
    assert all(v > 0 for v in column(rows, "train/entropy"))
    # update_epochs passes of ceil(real transitions / minibatch_size) gradient steps
    steps = [0.0] + column(rows, "train/env_steps")
    per_batch = [b - a for a, b in zip(steps, steps[1:])]
    assert column(rows, "train/updates") == [3 * math.ceil(s / 10) for s in per_batch]
    assert steps[-1] == module.env_steps
    assert not same_params(before, params(module))


# ---- the update's stages and flags ----------------------------------------------------------
@pytest.mark.parametrize(
    "flags",
    [dict(entropy_coef=0.1), dict(normalize_advantages=False), dict(gae_lambda=0.5),
     dict(clip_range_vf=0.01), dict(max_grad_norm=None), dict(normalize_observations=True),
     dict(normalize_rewards=True), dict(anneal_lr=True), dict(anneal_clip_range=True),
     dict(target_kl=1e-8)],
    ids=str,
)
def test_ppo_flags_change_the_parameters(flags):
    def run(**kw):
        module = PPO(**{**PPO_BASE, **kw})
        fit(module, 2)
        return params(module)

    assert not same_params(run(), run(**flags)), flags


def test_ppo_tiny_target_kl_stops_the_passes_early(tmp_path):
    updates = {}
    for target_kl in (None, 1e-8):
        module = PPO(**{**PPO_BASE, "target_kl": target_kl})
        rows = read_csv(fit(module, 2, tmp_path / str(target_kl)))
        updates[target_kl] = column(rows, "train/updates")
        steps = [0.0] + column(rows, "train/env_steps")
        minibatches = [math.ceil((b - a) / 16) for a, b in zip(steps, steps[1:])]
        if target_kl is None:
            assert updates[None] == [4 * m for m in minibatches]
        else:  # the last minibatch of the first pass already moved the policy past 1e-8
            assert updates[target_kl] == minibatches
    assert sum(updates[1e-8]) < sum(updates[None])


def test_anneal_clip_range_shrinks_the_clip_range_used():
    seen = []

    class Spy(PPO):
        def minibatch_losses(self, data, clip_range, agent=None):
            seen.append((self.env_steps, clip_range))
            return super().minibatch_losses(data, clip_range, agent)

    module = Spy(**{**PPO_BASE, "anneal_clip_range": True, "max_env_steps": 400})
    fit(module, 3)
    assert seen[0] == (0, pytest.approx(0.2))
    for env_steps, clip_range in seen:
        assert clip_range == pytest.approx(0.2 * (1 - env_steps / 400))
    assert len({c for _, c in seen}) == 3
