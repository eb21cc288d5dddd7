"""The gradient step's bookkeeping without torch's per-call Python layers.

Each function computes exactly what the torch utility it names computes, for the gradients of one
device; on a small network those layers cost as much as the math (a CartPole gradient step is a
few hundred µs here, and the utilities below took ~30-40 µs each)."""

from __future__ import annotations

import torch
from torch import Tensor


def clear_gradients(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad()`` (gradients set to None, its default) without the profiling
    wrapper of torch's method (~30 µs a call, once per gradient step)."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = None


def gradient_norm(grads: list[Tensor]) -> Tensor:
    """The 2-norm of all ``grads`` together: ``torch.nn.utils.get_total_norm``'s value (the norm of
    the per-tensor norms), without its grouping by device and dtype."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def gradients_finite(grads: list[Tensor]) -> bool:
    """Whether every entry of ``grads`` is finite, in one fused op: the check a ``GradScaler`` runs
    before each step, here with a scale of 1, which changes no value."""
    found = torch.zeros((), device=grads[0].device)
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.ones((), device=grads[0].device))
    return not found.item()
