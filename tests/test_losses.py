"""Unit tests for pg_lightning.losses."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical
from torch.testing import assert_close

from pg_lightning.losses import Rows, explained_variance, mean, ppo_clip_loss, reinforce_loss, total, value_loss


def t(values, **kw):
    return torch.tensor(values, dtype=torch.float64, **kw)


# --------------------------------------------------------------------------------------------
# reinforce_loss
# --------------------------------------------------------------------------------------------


def test_reinforce_loss_sum_and_mean_hand_example():
    log_probs = t([-0.5, -1.0, -2.0])
    returns = t([2.0, -1.0, 0.5])
    # terms: -(-0.5)*2 = 1, -(-1)*(-1) = -1, -(-2)*0.5 = 1  -> sum 1, mean 1/3
    assert_close(reinforce_loss(log_probs, returns), t(1.0))
    assert_close(reinforce_loss(log_probs, returns, "sum"), t(1.0))
    assert_close(reinforce_loss(log_probs, returns, "mean"), t(1.0 / 3.0))


def test_reinforce_loss_matches_direct_recomputation():
    g = torch.Generator().manual_seed(0)
    log_probs = -torch.rand(50, generator=g, dtype=torch.float64) * 3
    returns = torch.randn(50, generator=g, dtype=torch.float64)
    assert_close(reinforce_loss(log_probs, returns, "sum"), (-log_probs * returns).sum())
    assert_close(reinforce_loss(log_probs, returns, "mean"), (-log_probs * returns).mean())


def test_reinforce_loss_unknown_reduction_raises():
    with pytest.raises(ValueError, match="reduction"):
        reinforce_loss(t([-1.0]), t([1.0]), "max")


def test_reinforce_loss_returns_carry_no_gradient():
    log_probs = t([-0.5, -1.5], requires_grad=True)
    returns = t([2.0, 3.0], requires_grad=True)
    reinforce_loss(log_probs, returns).backward()
    assert returns.grad is None
    assert_close(log_probs.grad, t([-2.0, -3.0]))


def test_reinforce_gradient_matches_seed_per_step_autograd():
    torch.manual_seed(0)
    policy = torch.nn.Linear(4, 3).double()
    g = torch.Generator().manual_seed(1)
    T = 9
    obs = torch.randn(T, 4, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 3, (T,), generator=g)
    returns = torch.randn(T, generator=g, dtype=torch.float64)

    # seed style: one step at a time, torch.distributions.Categorical, sum of -logp * G
    policy.zero_grad()
    loss_seed = torch.zeros((), dtype=torch.float64)
    for i in range(T):
        dist = Categorical(logits=policy(obs[i]))
        loss_seed = loss_seed + (-dist.log_prob(actions[i]) * returns[i])
    loss_seed.backward()
    grads_seed = [p.grad.clone() for p in policy.parameters()]

    # batched
    policy.zero_grad()
    log_probs = policy(obs).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)
    loss = reinforce_loss(log_probs, returns, "sum")
    loss.backward()
    grads = [p.grad.clone() for p in policy.parameters()]

    assert_close(loss, loss_seed)
    for a, b in zip(grads, grads_seed):
        assert a.abs().sum() > 0
        assert_close(a, b)

    # the mean reduction's gradient is the sum's divided by T
    policy.zero_grad()
    log_probs = policy(obs).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)
    reinforce_loss(log_probs, returns, "mean").backward()
    for p, b in zip(policy.parameters(), grads_seed):
        assert_close(p.grad, b / T)


# --------------------------------------------------------------------------------------------
# ppo_clip_loss
# --------------------------------------------------------------------------------------------


def test_ppo_clip_loss_at_old_policy():
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(20, generator=g, dtype=torch.float64)
    adv = torch.randn(20, generator=g, dtype=torch.float64)
    loss, kl, clip_frac = ppo_clip_loss(lp, lp.clone(), adv, 0.2)
    assert_close(loss, -adv.mean())
    assert_close(kl, t(0.0))
    assert_close(clip_frac, torch.tensor(0.0))


def test_ppo_clip_loss_hand_example_with_clipping():
    # clip_range 0.2, ratios r = [1.5, 0.5, 1.1, 1.5], advantages A = [1, -1, 2, -2]
    #   r=1.5, A= 1: min(1.5*1,  1.2*1)   = 1.2   (clipped)
    #   r=0.5, A=-1: min(-0.5,   0.8*-1)  = -0.8  (clipped)
    #   r=1.1, A= 2: min(2.2,    2.2)     = 2.2   (inside the range)
    #   r=1.5, A=-2: min(-3.0,   -2.4)    = -3.0  (unclipped: the pessimistic side)
    # loss = -(1.2 - 0.8 + 2.2 - 3.0) / 4 = 0.1
    # clip_fraction: |r - 1| > 0.2 for 3 of 4 -> 0.75
    # approx_kl = mean((r - 1) - log r) = 0.09672669613482292
    ratios = t([1.5, 0.5, 1.1, 1.5])
    old = t([-1.0, -0.3, -2.0, -0.7])
    lp = (old + ratios.log()).detach().requires_grad_()
    adv = t([1.0, -1.0, 2.0, -2.0])
    loss, kl, clip_frac = ppo_clip_loss(lp, old, adv, 0.2)
    assert_close(loss, t(0.1))
    assert_close(clip_frac, torch.tensor(0.75))
    assert_close(kl, t(0.09672669613482292))
    assert not kl.requires_grad and not clip_frac.requires_grad
    # d loss / d log_prob_i = -(1/4) r_i A_i where the unclipped term is taken, else 0
    loss.backward()
    assert_close(lp.grad, t([0.0, 0.0, -0.25 * 1.1 * 2.0, -0.25 * 1.5 * -2.0]))


def test_ppo_clip_loss_no_gradient_to_old_log_probs_or_advantages():
    lp = t([-1.0, -2.0], requires_grad=True)
    old = t([-1.1, -1.9], requires_grad=True)
    adv = t([1.0, -1.0], requires_grad=True)
    loss, _, _ = ppo_clip_loss(lp, old, adv, 0.2)
    loss.backward()
    assert old.grad is None and adv.grad is None
    assert lp.grad is not None


# --------------------------------------------------------------------------------------------
# value_loss
# --------------------------------------------------------------------------------------------


def test_value_loss_is_half_mse():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(30, generator=g, dtype=torch.float64)
    ret = torch.randn(30, generator=g, dtype=torch.float64)
    assert_close(value_loss(v, ret), 0.5 * torch.nn.functional.mse_loss(v, ret))
    # hand: values [1, 2], returns [0, 4] -> 0.5 * (1 + 4) / 2 = 1.25
    assert_close(value_loss(t([1.0, 2.0]), t([0.0, 4.0])), t(1.25))


def test_value_loss_clipped_hand_example():
    # clip 0.5, old values all 1
    #   v=2, G=3: unclipped (2-3)^2 = 1;  clipped 1+0.5=1.5 -> (1.5-3)^2 = 2.25; max 2.25
    #   v=0, G=0: unclipped 0;            clipped 1-0.5=0.5 -> 0.25;             max 0.25
    #   v=0, G=3: unclipped 9;            clipped 0.5       -> 6.25;             max 9
    # loss = 0.5 * (2.25 + 0.25 + 9) / 3 = 11.5 / 6
    v = t([2.0, 0.0, 0.0])
    old = t([1.0, 1.0, 1.0])
    ret = t([3.0, 0.0, 3.0])
    assert_close(value_loss(v, ret, old_values=old, clip_range=0.5), t(11.5 / 6.0))
    # without clip_range old_values are ignored: plain 0.5 * MSE = 0.5 * (1 + 0 + 9) / 3
    assert_close(value_loss(v, ret, old_values=old), t(10.0 / 6.0))


def test_value_loss_clipping_needs_old_values():
    with pytest.raises(ValueError, match="old_values"):
        value_loss(t([1.0]), t([0.0]), clip_range=0.2)


def test_value_loss_gradient_flows_only_to_values():
    v = t([1.0, 2.0, 3.0], requires_grad=True)
    ret = t([0.0, 2.0, 5.0], requires_grad=True)
    old = t([1.0, 2.0, 3.0], requires_grad=True)
    value_loss(v, ret, old_values=old, clip_range=10.0).backward()
    assert ret.grad is None and old.grad is None
    # d/dv 0.5 * mean((v - G)^2) = (v - G) / n
    assert_close(v.grad, t([1.0, 0.0, -2.0]) / 3.0)


# --------------------------------------------------------------------------------------------
# explained_variance
# --------------------------------------------------------------------------------------------


def test_explained_variance_perfect_is_one():
    y = t([1.0, -2.0, 3.5, 0.0])
    assert_close(explained_variance(y.clone(), y), t(1.0))


def test_explained_variance_constant_mean_prediction_is_zero():
    y = t([1.0, -2.0, 3.5, 0.0])
    pred = torch.full_like(y, y.mean().item())
    assert_close(explained_variance(pred, y), t(0.0))


def test_explained_variance_constant_targets_is_nan():
    y = t([2.0, 2.0, 2.0])
    ev = explained_variance(t([1.0, 2.0, 3.0]), y)
    assert math.isnan(ev.item())
    assert math.isnan(explained_variance(y.clone(), y).item())


def test_explained_variance_hand_example():
    # targets [1, 2, 3, 4] (population var 1.25), residual [0, 0, 0, -1] (population var 0.1875)
    # EV = 1 - 0.1875 / 1.25 = 0.85
    assert_close(explained_variance(t([1.0, 2.0, 3.0, 5.0]), t([1.0, 2.0, 3.0, 4.0])), t(0.85))


# --------------------------------------------------------------------------------------------
# Rows: the same terms per seed, on padded [K, B] rows


def padded_rows() -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Three seeds' real entries (lengths 4, 2, 1) and the padded [3, 4] rows, NaN in the padding."""
    torch.manual_seed(0)
    real = [torch.randn(4, dtype=torch.float64), torch.randn(2, dtype=torch.float64), torch.randn(1, dtype=torch.float64)]
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    rows = torch.full((3, 4), float("nan"), dtype=torch.float64)
    for k, values in enumerate(real):
        rows[k, : len(values)] = values
    return real, rows, mask


def test_rows_reduce_each_seeds_real_entries_and_padding_never_leaks():
    real, x, mask = padded_rows()
    rows = Rows(mask)
    assert_close(rows.sum(x), torch.stack([r.sum() for r in real]))
    assert_close(rows.mean(x), torch.stack([r.mean() for r in real]))
    assert_close(rows.var(x)[:2], torch.stack([r.var() for r in real[:2]]))
    assert_close(rows.var(x, correction=0), torch.stack([r.var(correction=0) for r in real]))
    assert_close(Rows(torch.zeros(1, 3, dtype=torch.bool)).mean(torch.ones(1, 3)), torch.zeros(1))  # no entry: 0


def test_each_loss_with_rows_is_the_loss_of_each_seeds_entries():
    real, log_probs, mask = padded_rows()
    rows = Rows(mask)
    others = [torch.randn(4, dtype=torch.float64) for _ in range(3)]
    second = torch.stack(others[:3])  # [3, 4], padding entries real numbers here
    for reduction in ("sum", "mean"):
        expected = [reinforce_loss(r, second[k, : len(r)], reduction) for k, r in enumerate(real)]
        assert_close(reinforce_loss(log_probs, second, reduction, rows), torch.stack(expected))
    clip = torch.tensor([[0.1], [0.2], [0.3]], dtype=torch.float64)
    got = ppo_clip_loss(log_probs, second * 0.5, second, clip, rows)
    for k, r in enumerate(real):
        n = len(r)
        one = ppo_clip_loss(r, second[k, :n] * 0.5, second[k, :n], float(clip[k]))
        for a, b in zip(got, one):
            assert_close(a[k], b)
        assert_close(value_loss(log_probs, second, second * 0.5, 0.2, rows)[k],
                     value_loss(r, second[k, :n], second[k, :n] * 0.5, 0.2))
        if n > 1:
            assert_close(explained_variance(log_probs, second, rows)[k], explained_variance(r, second[k, :n]))
    assert_close(mean(log_probs, rows, keepdim=True), rows.mean(log_probs).unsqueeze(-1))
    assert_close(total(log_probs, "sum", rows), rows.sum(log_probs))
