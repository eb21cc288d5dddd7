"""Policy-gradient loss terms as pure tensor functions.

Every function takes flat per-transition tensors (masking and flattening happen in the module) and
returns a scalar to minimise, or detached diagnostics. Given ``rows`` (a ``Rows``), the tensors are
``[K, B]``, one padded row per seed of a many-seeds batch, and every function returns one value per
row, reduced over that row's real entries only. Conventions, because libraries disagree:
the value loss is ``0.5 * MSE``; value clipping is the PPO2/CleanRL ``max`` flavour; approx_kl is
the unbiased ``(r - 1) - log r`` estimator (Schulman's k3).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["sum", "mean"]


class Rows:
    """Reductions over the last dim of ``[K, B]`` tensors, one result per row, counting only the
    entries where ``mask`` is True: each row is one seed's batch, padded to the longest. Padding
    never reaches a result (it is replaced by 0, not multiplied by it, so garbage stays out)."""

    def __init__(self, mask: Tensor):
        self.mask = mask
        self.count = mask.sum(-1)

    def sum(self, x: Tensor) -> Tensor:
        return torch.where(self.mask, x, 0.0).sum(-1)

    def mean(self, x: Tensor) -> Tensor:
        """The mean of each row's real entries (0 for a row without any)."""
        return self.sum(x) / self.count.clamp_min(1)

    def var(self, x: Tensor, correction: int = 1) -> Tensor:
        deviation = x - self.mean(x).unsqueeze(-1)
        return self.sum(deviation * deviation) / (self.count - correction).clamp_min(1)


def mean(x: Tensor, rows: Rows | None = None, keepdim: bool = False) -> Tensor:
    """``x.mean()``, or each row's mean of its real entries (``[K, 1]`` with ``keepdim``, to broadcast)."""
    if rows is None:
        return x.mean()
    return rows.mean(x).unsqueeze(-1) if keepdim else rows.mean(x)


def total(x: Tensor, reduction: Reduction, rows: Rows | None = None) -> Tensor:
    """The sum or the mean of ``x`` (of each row's real entries, given ``rows``)."""
    if reduction == "sum":
        return x.sum() if rows is None else rows.sum(x)
    if reduction == "mean":
        return mean(x, rows)
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def reinforce_loss(log_probs: Tensor, returns: Tensor, reduction: Reduction = "sum", rows: Rows | None = None) -> Tensor:
    """``Σ_t -log π(a_t|s_t) · G_t`` (the seed's sum) or its mean; ``returns`` carry no gradient."""
    return total(-log_probs * returns.detach(), reduction, rows)


def value_loss(
    values: Tensor,
    returns: Tensor,
    old_values: Tensor | None = None,
    clip_range: float | None = None,
    rows: Rows | None = None,
) -> Tensor:
    """``0.5 * mean((V - G)^2)``; with ``clip_range`` the pessimistic max of clipped and unclipped."""
    returns = returns.detach()
    loss = (values - returns) ** 2
    if clip_range is not None:
        if old_values is None:
            raise ValueError("value clipping needs old_values")
        old_values = old_values.detach()
        clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * mean(loss, rows)


def ppo_clip_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip_range: float | Tensor,
    rows: Rows | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped surrogate, ``-mean(min(ρ A, clip(ρ, 1±ε) A))``; with ``rows``, ``clip_range``
    may be a ``[K, 1]`` tensor (each seed's annealed ε).

    Returns ``(loss, approx_kl, clip_fraction)``; the last two are detached diagnostics.
    """
    log_ratio = log_probs - old_log_probs.detach()
    ratio = log_ratio.exp()
    advantages = advantages.detach()
    surrogate = torch.minimum(
        ratio * advantages, ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    )
    with torch.no_grad():
        approx_kl = mean((ratio - 1.0) - log_ratio, rows)
        clip_fraction = mean(((ratio - 1.0).abs() > clip_range).float(), rows)
    return -mean(surrogate, rows), approx_kl, clip_fraction


def explained_variance(predictions: Tensor, targets: Tensor, rows: Rows | None = None) -> Tensor:
    """``1 - Var(targets - predictions) / Var(targets)``: 1 is perfect, ≤ 0 is no better than a constant."""
    def variance(x: Tensor) -> Tensor:
        return x.var(correction=0) if rows is None else rows.var(x, correction=0)

    var = variance(targets)
    ratio = variance(targets - predictions) / var
    return torch.where(var > 0, 1.0 - ratio, torch.full_like(var, float("nan")))
