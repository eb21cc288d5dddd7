"""Unit tests for pg_lightning.returns (pure tensor functions, time-major [T, N] layout)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from pg_lightning.losses import Rows
from pg_lightning.returns import (
    discounted_returns,
    gae,
    reverse_discounted_sum,
    running_returns,
    standardize,
)


def t(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def b(values):
    return torch.tensor(values, dtype=torch.bool)


def col(values, dtype=torch.float64):
    """A [T, 1] column."""
    return torch.tensor(values, dtype=dtype).unsqueeze(-1)


def bcol(values):
    return torch.tensor(values, dtype=torch.bool).unsqueeze(-1)


# --------------------------------------------------------------------------------------------
# reverse_discounted_sum
# --------------------------------------------------------------------------------------------


def test_reverse_discounted_sum_hand_example():
    # y[2] = 3
    # y[1] = 2 + 0.5 * 3   = 3.5
    # y[0] = 1 + 0.0 * 3.5 = 1      (discount 0 cuts the recursion)
    x = t([1.0, 2.0, 3.0])
    d = t([0.0, 0.5, 0.25])  # d[-1] multiplies y[T] = 0, so it has no effect
    assert_close(reverse_discounted_sum(x, d), t([1.0, 3.5, 3.0]))


def test_reverse_discounted_sum_keeps_dtype_and_columns_independent():
    x = torch.tensor([[1.0, 10.0], [1.0, 20.0]], dtype=torch.float32)
    d = torch.tensor([[1.0, 0.1], [1.0, 0.1]], dtype=torch.float32)
    # column 0: [1 + 1, 1] = [2, 1];  column 1: [10 + 0.1*20, 20] = [12, 20]
    y = reverse_discounted_sum(x, d)
    assert y.dtype == torch.float32
    assert_close(y, torch.tensor([[2.0, 12.0], [1.0, 20.0]]))


def test_reverse_discounted_sum_one_column_equals_the_rows_loop_exactly():
    """One column (an episode batch) takes a Python-float loop; it must give the row loop's bits."""
    torch.manual_seed(0)
    x, d = torch.randn(300, 2), torch.rand(300, 2)
    both = reverse_discounted_sum(x, d)
    for shape in ((300,), (300, 1)):
        one = reverse_discounted_sum(x[:, 1].reshape(shape), d[:, 1].reshape(shape))
        assert one.shape == shape and one.dtype == x.dtype
        assert torch.equal(one.flatten(), both[:, 1])


def test_reverse_discounted_sum_shape_mismatch_raises():
    with pytest.raises(ValueError):
        reverse_discounted_sum(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError):
        reverse_discounted_sum(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError):  # 0-d tensors have no time axis
        reverse_discounted_sum(torch.tensor(1.0), torch.tensor(1.0))


# --------------------------------------------------------------------------------------------
# discounted_returns
# --------------------------------------------------------------------------------------------


def test_discounted_returns_hand_example_single_episode():
    # gamma = 0.5, rewards 1, 2, 3, 4, no episode end (Monte-Carlo, no bootstrap):
    # G3 = 4
    # G2 = 3 + 0.5 * 4    = 5
    # G1 = 2 + 0.5 * 5    = 4.5
    # G0 = 1 + 0.5 * 4.5  = 3.25
    r = col([1.0, 2.0, 3.0, 4.0])
    no = bcol([False] * 4)
    assert_close(discounted_returns(r, no, no, 0.5), col([3.25, 4.5, 5.0, 4.0]))


def test_discounted_returns_several_episodes_in_one_column():
    # gamma = 0.5, rewards 1..6; episode ends after step 1 (terminated) and step 3 (truncated)
    # episode A (steps 0-1): G1 = 2,          G0 = 1 + 0.5*2 = 2
    # episode B (steps 2-3): G3 = 4,          G2 = 3 + 0.5*4 = 5
    # episode C (steps 4-5): G5 = 6,          G4 = 5 + 0.5*6 = 8
    r = col([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    term = bcol([False, True, False, False, False, False])
    trunc = bcol([False, False, False, True, False, False])
    assert_close(discounted_returns(r, term, trunc, 0.5), col([2.0, 2.0, 5.0, 4.0, 8.0, 6.0]))


def test_discounted_returns_two_columns_are_independent():
    # gamma = 0.5
    # column 0: rewards 1, 2, 3, done after step 0 -> G = [1, 2 + 1.5, 3] = [1, 3.5, 3]
    # column 1: rewards 4, 0, 8, no done          -> G2 = 8, G1 = 0 + 4 = 4, G0 = 4 + 2 = 6
    r = t([[1.0, 4.0], [2.0, 0.0], [3.0, 8.0]])
    term = b([[True, False], [False, False], [False, False]])
    trunc = torch.zeros_like(term)
    expected = t([[1.0, 6.0], [3.5, 4.0], [3.0, 8.0]])
    out = discounted_returns(r, term, trunc, 0.5)
    assert out.shape == (3, 2)
    assert_close(out, expected)
    # each column alone gives the same as its column in the batched call
    for n in range(2):
        alone = discounted_returns(r[:, n : n + 1], term[:, n : n + 1], trunc[:, n : n + 1], 0.5)
        assert_close(alone, expected[:, n : n + 1])


def test_discounted_returns_gamma_zero_is_rewards():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(7, 3, generator=g, dtype=torch.float64)
    term = torch.rand(7, 3, generator=g) < 0.3
    trunc = torch.rand(7, 3, generator=g) < 0.2
    assert_close(discounted_returns(r, term, trunc, 0.0), r)
    # also with next_values: gamma = 0 multiplies every bootstrap by zero
    nv = torch.randn(7, 3, generator=g, dtype=torch.float64)
    assert_close(discounted_returns(r, term, trunc, 0.0, next_values=nv), r)


def test_discounted_returns_gamma_one_is_sum_to_episode_end():
    # gamma = 1: suffix sums within each episode; done after step 2
    # episode A: rewards 1, 2, 3 -> [6, 5, 3]
    # episode B: rewards 4, 5    -> [9, 5]
    r = col([1.0, 2.0, 3.0, 4.0, 5.0])
    term = bcol([False, False, True, False, False])
    no = bcol([False] * 5)
    assert_close(discounted_returns(r, term, no, 1.0), col([6.0, 5.0, 3.0, 9.0, 5.0]))
    # truncation cuts the sum in exactly the same place when no next_values are given
    assert_close(discounted_returns(r, no, term, 1.0), col([6.0, 5.0, 3.0, 9.0, 5.0]))


def test_discounted_returns_terminated_vs_truncated_bootstrap():
    # gamma = 0.5, rewards 1, 2, 3, next_values 10, 20, 30, episode ends after step 1.
    # The rollout ends mid-episode at step 2, so step 2 bootstraps: x2 = 3 + 0.5*30 = 18.
    # terminated at 1: G2 = 18, G1 = 2,                 G0 = 1 + 0.5*2  = 2
    # truncated  at 1: G2 = 18, G1 = 2 + 0.5*20 = 12,   G0 = 1 + 0.5*12 = 7
    r = col([1.0, 2.0, 3.0])
    nv = col([10.0, 20.0, 30.0])
    end = bcol([False, True, False])
    no = bcol([False] * 3)
    g_term = discounted_returns(r, end, no, 0.5, next_values=nv)
    g_trunc = discounted_returns(r, no, end, 0.5, next_values=nv)
    assert_close(g_term, col([2.0, 2.0, 18.0]))
    assert_close(g_trunc, col([7.0, 12.0, 18.0]))
    # They differ by exactly gamma * V(s') at the truncated step, discounted back within the
    # episode, and not at all in the next episode.
    assert_close(g_trunc - g_term, col([0.5 * 0.5 * 20.0, 0.5 * 20.0, 0.0]))


def test_discounted_returns_last_step_of_unfinished_rollout_bootstraps():
    # gamma = 0.9: single step, not done -> G = 1 + 0.9 * 5 = 5.5
    r, nv = col([1.0]), col([5.0])
    no = bcol([False])
    assert_close(discounted_returns(r, no, no, 0.9, next_values=nv), col([5.5]))
    # terminated last step: no bootstrap -> 1
    assert_close(discounted_returns(r, bcol([True]), no, 0.9, next_values=nv), col([1.0]))
    # truncated last step: bootstrap -> 5.5
    assert_close(discounted_returns(r, no, bcol([True]), 0.9, next_values=nv), col([5.5]))
    # without next_values nothing bootstraps
    assert_close(discounted_returns(r, no, no, 0.9), col([1.0]))


def test_discounted_returns_mid_episode_next_values_are_not_used():
    # Mid-episode steps take their future from the recursion, not from next_values.
    r = col([1.0, 1.0, 1.0])
    no = bcol([False] * 3)
    nv_a = col([100.0, -50.0, 2.0])
    nv_b = col([-7.0, 3.0, 2.0])
    out_a = discounted_returns(r, no, no, 0.5, next_values=nv_a)
    out_b = discounted_returns(r, no, no, 0.5, next_values=nv_b)
    # G2 = 1 + 0.5*2 = 2, G1 = 1 + 1 = 2, G0 = 1 + 1 = 2
    assert_close(out_a, col([2.0, 2.0, 2.0]))
    assert_close(out_b, out_a)


def test_discounted_returns_terminated_and_truncated_same_step_does_not_bootstrap():
    # Gymnasium may report terminated=True and truncated=True for the same step (the time limit
    # hits on a terminal state). The docstring says "a terminated one never does" bootstrap, and
    # gae() treats such a step as terminal. gamma = 0.5, rewards 1, 2, next_values 10, 20,
    # both flags set at step 1 (the last step):
    # G1 = 2 (terminal: no bootstrap), G0 = 1 + 0.5 * 2 = 2
    r = col([1.0, 2.0])
    nv = col([10.0, 20.0])
    both = bcol([False, True])
    assert_close(discounted_returns(r, both, both, 0.5, next_values=nv), col([2.0, 2.0]))


def test_discounted_returns_shape_validation():
    r = torch.zeros(4, 2)
    ok = torch.zeros(4, 2, dtype=torch.bool)
    with pytest.raises(ValueError):
        discounted_returns(r, torch.zeros(4, 1, dtype=torch.bool), ok, 0.9)
    with pytest.raises(ValueError):
        discounted_returns(r, ok, torch.zeros(3, 2, dtype=torch.bool), 0.9)
    with pytest.raises(ValueError):
        discounted_returns(r, ok, ok, 0.9, next_values=torch.zeros(4))


def test_discounted_returns_keeps_dtype_and_device():
    r = torch.tensor([[1.0], [2.0]], dtype=torch.float32)
    no = torch.zeros(2, 1, dtype=torch.bool)
    out = discounted_returns(r, no, no, 0.5)
    assert out.dtype == torch.float32 and out.device == r.device
    assert_close(out, torch.tensor([[2.0], [2.0]]))


# --------------------------------------------------------------------------------------------
# gae
# --------------------------------------------------------------------------------------------

# Shared hand example: gamma = 0.9, lambda = 0.8 (gamma*lambda = 0.72)
R4 = [1.0, 0.0, 2.0, 1.0]
V4 = [0.5, 1.0, 0.2, 0.4]
NV4 = [1.0, 0.2, 0.4, 0.8]  # next_values[t] == values[t+1] within the episode


def test_gae_hand_example_no_done():
    # deltas: d0 = 1 + 0.9*1.0 - 0.5 = 1.4
    #         d1 = 0 + 0.9*0.2 - 1.0 = -0.82
    #         d2 = 2 + 0.9*0.4 - 0.2 = 2.16
    #         d3 = 1 + 0.9*0.8 - 0.4 = 1.32   (unfinished rollout: bootstraps V(s_4) = 0.8)
    # A3 = 1.32
    # A2 = 2.16  + 0.72*1.32     = 3.1104
    # A1 = -0.82 + 0.72*3.1104   = 1.419488
    # A0 = 1.4   + 0.72*1.419488 = 2.42203136
    no = bcol([False] * 4)
    adv = gae(col(R4), col(V4), col(NV4), no, no, gamma=0.9, lam=0.8)
    assert_close(adv, col([2.42203136, 1.419488, 3.1104, 1.32]))


def test_gae_hand_example_terminated_and_truncated():
    # Episode ends after step 1; the final observation's value is next_values[1] = 0.7.
    nv = col([1.0, 0.7, 0.4, 0.8])
    end = bcol([False, True, False, False])
    no = bcol([False] * 4)
    # terminated at 1: d1 = 0 - 1.0 = -1.0 (no bootstrap), A1 = -1.0 (recursion cut)
    #                  A0 = 1.4 + 0.72*(-1.0) = 0.68;  A2, A3 as without a done: 3.1104, 1.32
    adv_term = gae(col(R4), col(V4), nv, end, no, gamma=0.9, lam=0.8)
    assert_close(adv_term, col([0.68, -1.0, 3.1104, 1.32]))
    # truncated at 1:  d1 = 0 + 0.9*0.7 - 1.0 = -0.37, A1 = -0.37
    #                  A0 = 1.4 + 0.72*(-0.37) = 1.1336
    adv_trunc = gae(col(R4), col(V4), nv, no, end, gamma=0.9, lam=0.8)
    assert_close(adv_trunc, col([1.1336, -0.37, 3.1104, 1.32]))


def _random_rollout(T=12, N=3, seed=0, p_term=0.15, p_trunc=0.1):
    """Random rollout whose next_values agree with values inside episodes."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=torch.float64)
    values = torch.randn(T, N, generator=g, dtype=torch.float64)
    term = torch.rand(T, N, generator=g) < p_term
    trunc = (torch.rand(T, N, generator=g) < p_trunc) & ~term
    done = term | trunc
    final_values = torch.randn(T, N, generator=g, dtype=torch.float64)  # V(final obs)
    shifted = torch.cat([values[1:], torch.randn(1, N, generator=g, dtype=torch.float64)])
    next_values = torch.where(done, final_values, shifted)
    return rewards, values, next_values, term, trunc


def test_gae_lambda_zero_is_td_errors():
    r, v, nv, term, trunc = _random_rollout(seed=1)
    gamma = 0.95
    td = r + gamma * (~term).double() * nv - v
    assert_close(gae(r, v, nv, term, trunc, gamma, 0.0), td)


def test_gae_lambda_one_is_bootstrapped_returns_minus_values():
    for seed in range(3):
        r, v, nv, term, trunc = _random_rollout(seed=seed)
        gamma = 0.9
        adv = gae(r, v, nv, term, trunc, gamma, 1.0)
        ret = discounted_returns(r, term, trunc, gamma, next_values=nv)
        assert_close(adv, ret - v)


def test_gae_split_at_done_boundary_equals_one_call():
    r, v, nv, term, trunc = _random_rollout(T=10, N=1, seed=5, p_term=0.0, p_trunc=0.0)
    # one terminated episode end after step 3 and one truncated end after step 6
    term[3] = True
    trunc[6] = True
    gamma, lam = 0.97, 0.9
    whole = gae(r, v, nv, term, trunc, gamma, lam)
    for cut in (4, 7):  # split right after a done
        first = gae(r[:cut], v[:cut], nv[:cut], term[:cut], trunc[:cut], gamma, lam)
        second = gae(r[cut:], v[cut:], nv[cut:], term[cut:], trunc[cut:], gamma, lam)
        assert_close(torch.cat([first, second]), whole)
    # whereas splitting mid-episode changes the advantage before the cut
    first = gae(r[:2], v[:2], nv[:2], term[:2], trunc[:2], gamma, lam)
    assert not torch.allclose(first, whole[:2])


def test_gae_truncated_vs_terminated_differ_only_by_bootstrap():
    r, v, nv, term, trunc = _random_rollout(T=8, N=1, seed=7, p_term=0.0, p_trunc=0.0)
    gamma, lam = 0.9, 0.8
    k = 4  # the episode ends after step 4; steps 5.. are a new episode
    end = torch.zeros_like(term)
    end[k] = True
    no = torch.zeros_like(term)
    a_term = gae(r, v, nv, end, no, gamma, lam)
    a_trunc = gae(r, v, nv, no, end, gamma, lam)
    diff = a_trunc - a_term
    boot = gamma * nv[k]
    expected = torch.zeros_like(diff)
    for s in range(k + 1):  # the bootstrap term, discounted back through the episode by (γλ)^j
        expected[s] = boot * (gamma * lam) ** (k - s)
    assert_close(diff, expected)
    assert torch.all(diff[k + 1 :] == 0)


def test_gae_terminated_and_truncated_same_step_is_terminal():
    # Both flags on one step: gae treats it as terminated (no bootstrap).
    no = bcol([False] * 4)
    end = bcol([False, True, False, False])
    nv = col([1.0, 0.7, 0.4, 0.8])
    both = gae(col(R4), col(V4), nv, end, end, gamma=0.9, lam=0.8)
    only_term = gae(col(R4), col(V4), nv, end, no, gamma=0.9, lam=0.8)
    assert_close(both, only_term)


def test_gae_shape_validation():
    x = torch.zeros(5, 2)
    f = torch.zeros(5, 2, dtype=torch.bool)
    with pytest.raises(ValueError):
        gae(x, torch.zeros(5, 3), x, f, f, 0.9, 0.9)
    with pytest.raises(ValueError):
        gae(x, x, torch.zeros(4, 2), f, f, 0.9, 0.9)
    with pytest.raises(ValueError):
        gae(x, x, x, f, torch.zeros(5, dtype=torch.bool), 0.9, 0.9)


# --------------------------------------------------------------------------------------------
# standardize
# --------------------------------------------------------------------------------------------


def test_normalize_mean_zero_std_one():
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 5.0 * torch.randn(257, 3, generator=g, dtype=torch.float64)
    y = standardize(x)
    assert y.shape == x.shape
    assert_close(y.mean(), torch.tensor(0.0, dtype=torch.float64), atol=1e-10, rtol=0)
    assert_close(y.std(), torch.tensor(1.0, dtype=torch.float64), atol=1e-6, rtol=0)
    # it is an affine map of x: (x - mean) / std over all elements
    assert_close(y, (x - x.mean()) / x.std(), atol=1e-6, rtol=1e-6)


def test_normalize_single_element_is_zero_not_nan():
    y = standardize(torch.tensor([3.7]))
    assert not torch.isnan(y).any()
    assert_close(y, torch.tensor([0.0]))


def test_normalize_empty():
    y = standardize(torch.empty(0))
    assert y.shape == (0,)


def test_normalize_constant_input_is_zero_not_nan():
    y = standardize(torch.full((5,), 2.0))
    assert not torch.isnan(y).any()
    assert_close(y, torch.zeros(5))


# --------------------------------------------------------------------------------------------
# running_returns
# --------------------------------------------------------------------------------------------


def test_running_returns_hand_example_with_initial_and_reset():
    # gamma = 0.5
    # column 0: rewards 1, 2, 3, 4; initial R_{-1} = 2; terminated after step 1
    #   R0 = 1 + 0.5*2 = 2,  R1 = 2 + 0.5*2 = 3,  R2 = 3 (reset),  R3 = 4 + 0.5*3 = 5.5
    # column 1: rewards 1, 1, 1, 1; initial 0; truncated after step 2
    #   R0 = 1,  R1 = 1 + 0.5 = 1.5,  R2 = 1 + 0.75 = 1.75,  R3 = 1 (reset)
    r = t([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    term = b([[False, False], [True, False], [False, False], [False, False]])
    trunc = b([[False, False], [False, False], [False, True], [False, False]])
    initial = t([2.0, 0.0])
    expected = t([[2.0, 1.0], [3.0, 1.5], [3.0, 1.75], [5.5, 1.0]])
    assert_close(running_returns(r, term, trunc, 0.5, initial), expected)


def test_running_returns_carries_over_between_batches():
    g = torch.Generator().manual_seed(3)
    r = torch.randn(10, 2, generator=g, dtype=torch.float64)
    term = torch.rand(10, 2, generator=g) < 0.2
    trunc = torch.rand(10, 2, generator=g) < 0.1
    gamma = 0.99
    zero = torch.zeros(2, dtype=torch.float64)
    whole = running_returns(r, term, trunc, gamma, zero)
    first = running_returns(r[:6], term[:6], trunc[:6], gamma, zero)
    # the carried value is the last R, or zero after a done (the caller's job)
    carry = torch.where(term[5] | trunc[5], zero, first[-1])
    second = running_returns(r[6:], term[6:], trunc[6:], gamma, carry)
    assert_close(torch.cat([first, second]), whole)


def test_running_returns_does_not_modify_inputs():
    r = t([1.0, 2.0])
    no = b([False, False])
    running_returns(r, no, no, 0.5, t(10.0))
    assert_close(r, t([1.0, 2.0]))


def test_running_returns_shape_validation():
    with pytest.raises(ValueError):
        running_returns(torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.bool),
                        torch.zeros(3, 2, dtype=torch.bool), 0.9, torch.zeros(2))


def test_standardize_with_rows_standardizes_each_seeds_real_entries():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False], [True, False, False, False, False]])
    padded = torch.where(mask, x, float("nan"))
    y = standardize(padded, eps=1e-9, rows=Rows(mask))
    assert_close(y[0], standardize(x[0], eps=1e-9))
    assert_close(y[1, :3], standardize(x[1, :3], eps=1e-9))
    assert_close(y[2, :1], torch.zeros(1, dtype=torch.float64))  # one entry: 0, as standardize gives alone
