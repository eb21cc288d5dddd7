"""The gradient step's bookkeeping without torch's per-call Python layers.

Each function computes exactly what the torch utility it names computes, for the gradients of one
device; on a small network those layers cost as much as the math (a CartPole gradient step is a
few hundred µs here, and the utilities below took ~30-40 µs each)."""

from __future__ import annotations

from typing import Any

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


def clip_gradients(grads: list[Tensor], max_norm: float, norm: Tensor) -> None:
    """Scale ``grads`` in place to a total norm of at most ``max_norm``, given their ``norm``:
    ``torch.nn.utils.clip_grads_with_norm_`` (the same coefficient, one foreach multiply) without its
    grouping by device and dtype (~100 µs a call on a small network)."""
    torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))


def gradients_finite(grads: list[Tensor]) -> bool:
    """Whether every entry of ``grads`` is finite, in one fused op: the check a ``GradScaler`` runs
    before each step, here with a scale of 1, which changes no value."""
    found = torch.zeros((), device=grads[0].device)
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.ones((), device=grads[0].device))
    return not found.item()


class Adam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)``: the same kernel, state, hooks and checkpoints, in two calls
    per step where they can be: torch's step rebuilds its tensor lists, checks options and regroups
    the tensors by device and dtype every call (~50 µs more on a small network).

    The short path takes a plain step: one parameter group on one device and dtype, every parameter
    with a gradient and a state, numbers (not tensors) for lr, betas and eps, no AMP grad scale, no
    amsgrad. Anything else (the first step, which creates the state, included; ``fused=False``,
    for devices without the fused kernel, always) is torch's own ``step``. A closure is evaluated
    first, as torch does.
    """

    def __init__(self, params: Any, lr: float = 1e-3, **kwargs: Any):
        super().__init__(params, lr=lr, **{"fused": True, **kwargs})

    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:  # Lightning passes one (which may clear the gradients: read them after)
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        grads = [p.grad for p in group["params"]]
        states = [self.state.get(p) for p in group["params"]]
        if not self._plain(group, grads, states):
            super().step()
            return loss
        steps = [s["step"] for s in states]
        beta1, beta2 = group["betas"]
        with torch.no_grad():
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                group["params"], grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
                steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
            )
        return loss

    def _plain(self, group: dict[str, Any], grads: list[Tensor | None], states: list[Any]) -> bool:
        """Whether this step is one the short path takes exactly as torch's step would."""
        numbers = not any(isinstance(v, Tensor) for v in (group["lr"], group["eps"], group["weight_decay"], *group["betas"]))
        options = group["fused"] and not (group["amsgrad"] or group["capturable"] or group["differentiable"]
                                          or group["decoupled_weight_decay"])
        scaled = getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None
        return (len(self.param_groups) == 1 and numbers and options and not scaled
                and all(g is not None for g in grads) and all(states) and not any(g.is_sparse for g in grads)
                and len({(p.device, p.dtype) for p in group["params"]}) == 1)
