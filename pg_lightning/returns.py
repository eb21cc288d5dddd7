"""Returns and advantages as pure tensor functions.

Layout: time first, ``[T, N]`` (T steps of N parallel envs). ``terminated[t]`` / ``truncated[t]``
describe transition ``t`` (the episode ended *after* action ``t``). ``next_values[t]`` is V(s_{t+1}),
the value of the observation that transition ``t`` led to (the final observation when the episode
ended there). Termination stops the bootstrap; truncation bootstraps from V(s_{t+1}); either one
cuts the recursion so nothing flows across an episode boundary.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pg_lightning.losses import Rows


def _check_time_major(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) == 0 or any(s != first for s in shapes.values()):
        raise ValueError(f"expected tensors of one [T, ...] shape, got {shapes}")


def reverse_discounted_sum(x: Tensor, discounts: Tensor) -> Tensor:
    """``y[t] = x[t] + discounts[t] * y[t + 1]`` with ``y[T] = 0``, along dim 0.

    The one recursion behind discounted returns and GAE. Runs as a loop over time in float64:
    on Python floats for one column (an episode batch), on numpy ``[N]`` rows otherwise; either is
    several times faster than the loop in torch ops (benchmarks/README.md).
    """
    _check_time_major(x=x, discounts=discounts)
    if x[0].numel() == 1:  # Python floats are float64: rounded once to x.dtype, as the row loop's result (tested)
        column, acc = [], 0.0
        for x_t, d_t in zip(reversed(x.detach().reshape(-1).tolist()), reversed(discounts.detach().reshape(-1).tolist())):
            acc = x_t + d_t * acc
            column.append(acc)
        return torch.tensor(column[::-1], dtype=x.dtype, device=x.device).reshape(x.shape)
    xs = x.detach().cpu().double().numpy()
    ds = discounts.detach().cpu().double().numpy()
    ys = np.empty_like(xs)
    acc = np.zeros_like(xs[0])
    for t in range(xs.shape[0] - 1, -1, -1):
        acc = xs[t] + ds[t] * acc
        ys[t] = acc
    return torch.from_numpy(ys).to(device=x.device, dtype=x.dtype)


def discounted_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    next_values: Tensor | None = None,
) -> Tensor:
    """Discounted returns ``G_t = r_t + γ G_{t+1}``, restarted at every episode end.

    Without ``next_values`` they are Monte-Carlo returns (the seed's REINFORCE). With them, a
    truncated transition bootstraps ``γ V(s_{t+1})`` and so does the last step of an unfinished
    rollout; a terminated one never does.
    """
    _check_time_major(rewards=rewards, terminated=terminated, truncated=truncated)
    done = (terminated | truncated).to(rewards.dtype)
    x = rewards
    if next_values is not None:
        _check_time_major(rewards=rewards, next_values=next_values)
        open_end = torch.zeros_like(done)
        open_end[-1] = 1.0 - done[-1]  # rollout cut mid-episode: bootstrap the tail
        bootstrap = (truncated & ~terminated).to(rewards.dtype) + open_end
        x = rewards + gamma * bootstrap * next_values
    return reverse_discounted_sum(x, gamma * (1.0 - done))


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """Generalised advantage estimates (Schulman et al. 2016).

    ``δ_t = r_t + γ (1 - terminated_t) V(s_{t+1}) - V(s_t)`` and ``A_t = δ_t + γ λ (1 - done_t) A_{t+1}``.
    λ = 0 gives TD(0) errors; λ = 1 gives bootstrapped discounted returns minus V.
    """
    _check_time_major(
        rewards=rewards, values=values, next_values=next_values,
        terminated=terminated, truncated=truncated,
    )
    not_terminated = 1.0 - terminated.to(rewards.dtype)
    deltas = rewards + gamma * not_terminated * next_values - values
    done = (terminated | truncated).to(rewards.dtype)
    return reverse_discounted_sum(deltas, gamma * lam * (1.0 - done))


def standardize(x: Tensor, eps: float = 1e-8, rows: Rows | None = None) -> Tensor:
    """``(x - mean) / (std + eps)`` over all elements (advantages, REINFORCE's weights), or over each
    row's real entries given ``rows``; a single element maps to 0, never NaN."""
    if rows is not None:
        deviation = x - rows.mean(x).unsqueeze(-1)
        std = rows.var(x).sqrt().unsqueeze(-1)
        return torch.where(rows.count.unsqueeze(-1) > 1, deviation / (std + eps), deviation)
    if x.numel() < 2:
        return x - x.mean() if x.numel() else x
    return (x - x.mean()) / (x.std() + eps)


def running_returns(
    rewards: Tensor, terminated: Tensor, truncated: Tensor, gamma: float, initial: Tensor
) -> Tensor:
    """Forward discounted sums ``R_t = r_t + γ R_{t-1}``, restarted after each episode end.

    Reward normalisation scales rewards by the spread of these (as gymnasium's NormalizeReward
    does). ``initial`` is ``R_{-1}`` carried over from the previous batch (zero after a done).
    """
    _check_time_major(rewards=rewards, terminated=terminated, truncated=truncated)
    done = (terminated | truncated).to(rewards.dtype)
    keep = torch.cat([torch.ones_like(done[:1]), 1.0 - done[:-1]])  # 0 right after a done
    x = rewards.clone()
    x[0] = x[0] + gamma * initial
    # The forward recursion is the reverse one on time-reversed inputs.
    return reverse_discounted_sum(x.flip(0), (gamma * keep).flip(0)).flip(0)
