"""A2C: its loss re-derived by hand, what each of its flags changes, and reward scaling in its loss."""

import math

import pytest
import torch
from helpers import A2C_BASE, fit, hand_made_batch, params, reference_value, same_params
from torch.distributions import Categorical

from pg_lightning import A2C


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """GAE by an explicit loop over time in each column."""
    T, N = rewards.shape
    advantages = torch.zeros(T, N, dtype=torch.float64)
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            term = float(terminated[t, n])
            done = float(terminated[t, n] or truncated[t, n])
            delta = float(rewards[t, n]) + gamma * (1 - term) * float(next_values[t, n]) - float(values[t, n])
            running = delta + gamma * lam * (1 - done) * running
            advantages[t, n] = running
    return advantages.float()


def reference_a2c(module, batch):
    hp, policy = module.hparams, module.policy
    obs = batch.observations
    values = reference_value(policy, obs)  # [T, N]
    with torch.no_grad():
        next_values = reference_value(policy, batch.next_observations)
    dist = Categorical(logits=policy.actor_out(policy.trunk(obs)))
    log_probs, entropy = dist.log_prob(batch.actions), dist.entropy()
    advantages = reference_gae(batch.rewards, values.detach(), next_values, batch.terminated,
                               batch.truncated, hp.gamma, hp.gae_lambda)
    returns = advantages + values.detach()
    m = batch.mask
    adv = advantages[m]
    if hp.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    terms = {
        "policy_loss": -(log_probs[m] * adv).mean(),
        "value_loss": 0.5 * ((values[m] - returns[m]) ** 2).mean(),
        "entropy": entropy[m].mean(),
    }
    terms["loss"] = terms["policy_loss"] + hp.value_coef * terms["value_loss"] - hp.entropy_coef * terms["entropy"]
    return terms, advantages


# ---- the loss ---------------------------------------------------------------------------------
@pytest.mark.parametrize("critic", ["separate", "shared"])
@pytest.mark.parametrize("normalize_advantages", [False, True])
def test_a2c_loss_matches_a_direct_rederivation(critic, normalize_advantages):
    module = A2C(seed=3, num_envs=2, gamma=0.9, gae_lambda=0.8, value_coef=0.7, entropy_coef=0.05,
                 critic=critic, normalize_advantages=normalize_advantages)
    batch = hand_made_batch()
    ours = module.compute_losses(batch)
    theirs, advantages = reference_a2c(module, batch)
    for key in ("policy_loss", "value_loss", "entropy", "loss"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6, msg=key)
    values = reference_value(module.policy, batch.observations).detach()
    module_adv, module_returns = module.advantages(batch, values)
    torch.testing.assert_close(module_adv, advantages, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(module_returns, advantages + values, rtol=1e-5, atol=1e-6)
    # the gradients agree too: advantages and value targets carry no gradient
    grads = []
    for loss in (ours["loss"], theirs["loss"]):
        module.zero_grad()
        loss.backward()
        grads.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                      for p in module.policy.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a2c_policy_loss_alone_does_not_train_the_separate_critic():
    module = A2C(seed=0, num_envs=2)
    terms = module.compute_losses(hand_made_batch())
    terms["policy_loss"].backward()
    assert all(p.grad is None for p in module.policy.critic_trunk.parameters())
    assert module.policy.value_out.weight.grad is None


def test_reward_scaling_divides_rewards_by_the_running_std():
    module = A2C(seed=0, num_envs=2, normalize_rewards=True, gamma=0.9, gae_lambda=0.8)
    batch = hand_made_batch()
    module.normalizer.rewards.update(torch.tensor(1.0), torch.tensor(4.0), 10.0)
    scaled = module.compute_losses(batch)
    plain = A2C(seed=0, num_envs=2, gamma=0.9, gae_lambda=0.8)
    batch_scaled = hand_made_batch()
    batch_scaled.rewards = batch_scaled.rewards / math.sqrt(4.0 + 1e-8)
    torch.testing.assert_close(scaled["loss"], plain.compute_losses(batch_scaled)["loss"])


# ---- flags change the update -------------------------------------------------------------------
def collected_batch(module):
    collector = module.make_collector()
    try:
        return collector.rollout(module.policy, module.hparams.n_steps)
    finally:
        collector.close()


@pytest.mark.parametrize(
    "flags",
    [dict(entropy_coef=0.1), dict(normalize_advantages=True), dict(gae_lambda=0.5),
     dict(max_grad_norm=None), dict(normalize_observations=True), dict(normalize_rewards=True),
     dict(anneal_lr=True)],
    ids=str,
)
def test_a2c_flags_change_the_parameters(flags):
    def run(**kw):
        module = A2C(**{**A2C_BASE, **kw})
        fit(module, 3)
        return params(module)

    assert not same_params(run(), run(**flags)), flags


def test_a2c_loss_flags_change_the_loss_on_the_same_batch():
    batch = collected_batch(A2C(**A2C_BASE))
    loss = lambda **kw: A2C(**{**A2C_BASE, **kw}).compute_losses(batch)["loss"]  # noqa: E731
    reference = loss()
    torch.testing.assert_close(loss(), reference)  # same seed, same batch: same loss
    for flags in (dict(entropy_coef=0.1), dict(normalize_advantages=True), dict(gae_lambda=0.5),
                  dict(gamma=0.5), dict(value_coef=1.0)):
        assert not torch.allclose(loss(**flags), reference), flags
