"""Policy-gradient loss terms as pure tensor functions.

Every function takes flat per-transition tensors (masking and flattening happen in the module) and
returns a scalar to minimise, or detached diagnostics. Conventions, because libraries disagree:
the value loss is ``0.5 * MSE``; value clipping is the PPO2/CleanRL ``max`` flavour; approx_kl is
the unbiased ``(r - 1) - log r`` estimator (Schulman's k3).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["sum", "mean"]


def reinforce_loss(log_probs: Tensor, returns: Tensor, reduction: Reduction = "sum") -> Tensor:
    """``Σ_t -log π(a_t|s_t) · G_t`` (the seed's sum) or its mean; ``returns`` carry no gradient."""
    terms = -log_probs * returns.detach()
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.mean()
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def value_loss(
    values: Tensor,
    returns: Tensor,
    old_values: Tensor | None = None,
    clip_range: float | None = None,
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
    return 0.5 * loss.mean()


def ppo_clip_loss(
    log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, clip_range: float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped surrogate, ``-mean(min(ρ A, clip(ρ, 1±ε) A))``.

    Returns ``(loss, approx_kl, clip_fraction)``; the last two are detached diagnostics.
    """
    log_ratio = log_probs - old_log_probs.detach()
    ratio = log_ratio.exp()
    advantages = advantages.detach()
    surrogate = torch.minimum(
        ratio * advantages, ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    )
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip_range).float().mean()
    return -surrogate.mean(), approx_kl, clip_fraction


def explained_variance(predictions: Tensor, targets: Tensor) -> Tensor:
    """``1 - Var(targets - predictions) / Var(targets)``: 1 is perfect, ≤ 0 is no better than a constant."""
    var = targets.var(correction=0)
    ratio = (targets - predictions).var(correction=0) / var
    return torch.where(var > 0, 1.0 - ratio, torch.full_like(var, float("nan")))
