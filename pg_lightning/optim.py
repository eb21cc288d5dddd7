"""The gradient step's bookkeeping without torch's per-call Python layers.

Each function computes exactly what the torch utility it names computes, for the gradients of one
device; on a small network those layers cost as much as the math (benchmarks/README.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def private_op(name: str) -> Callable[..., Any] | None:
    """torch's private op ``name``, or ``None`` where this torch has none. Each is looked up once,
    at import: without it the function using it takes the public torch path it shortcuts, which
    computes the same values, so a torch release that renames one costs speed, not a step."""
    op = getattr(torch, name, None)
    return op if callable(op) else None


_foreach_norm = private_op("_foreach_norm")
_foreach_mul_ = private_op("_foreach_mul_")
_foreach_add_ = private_op("_foreach_add_")
_fused_adam_ = private_op("_fused_adam_")
_non_finite_check_and_unscale_ = private_op("_amp_foreach_non_finite_check_and_unscale_")


def clear_gradients(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad()`` (gradients set to None, its default) without the profiling
    wrapper of torch's method (once per gradient step)."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = None


def gradient_norm(grads: list[Tensor]) -> Tensor:
    """The 2-norm of all ``grads`` together: ``torch.nn.utils.get_total_norm``'s value (the norm of
    the per-tensor norms), without its grouping by device and dtype."""
    if _foreach_norm is None:
        return torch.nn.utils.get_total_norm(grads, foreach=False)
    return torch.linalg.vector_norm(torch.stack(_foreach_norm(grads)))


def clip_gradients(grads: list[Tensor], max_norm: float, norm: Tensor) -> None:
    """Scale ``grads`` in place to a total norm of at most ``max_norm``, given their ``norm``:
    ``torch.nn.utils.clip_grads_with_norm_`` (the same coefficient, one foreach multiply) without its
    grouping by device and dtype."""
    coefficient = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    if _foreach_mul_ is None:
        for grad in grads:  # clip_grads_with_norm_(foreach=False)'s multiply
            grad.mul_(coefficient)
        return
    _foreach_mul_(grads, coefficient)


def gradients_finite(grads: list[Tensor]) -> bool:
    """Whether every entry of ``grads`` is finite, in one fused op: the check a ``GradScaler`` runs
    before each step, here with a scale of 1, which changes no value. The op takes float32 flags
    whatever the gradients' dtype (or torch's default dtype) is."""
    if _non_finite_check_and_unscale_ is None:
        return bool(torch.stack([torch.isfinite(grad).all() for grad in grads]).all())
    found = torch.zeros((), dtype=torch.float32, device=grads[0].device)
    _non_finite_check_and_unscale_(grads, found, torch.ones((), dtype=torch.float32, device=grads[0].device))
    return not found.item()


class Adam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)``: the same kernel, state, hooks and checkpoints, in two calls
    per step where they can be: torch's step rebuilds its tensor lists, checks options and regroups
    the tensors by device and dtype every call.

    The short path takes a plain step: in every parameter group that has gradients (a many-seeds
    module has a group per seed, and a step may leave some without), every parameter on one device
    and dtype with a gradient and a state, numbers (not tensors) for lr, betas and eps; no AMP grad
    scale, no amsgrad. Each such group is one fused call, as in torch's step. Anything else (the
    first step, which creates the state, included; ``fused=False``, for devices without the fused
    kernel, and a torch without the private ops it calls, always) is torch's own ``step``. A closure is evaluated first, as torch does.

    Unlike torch's fused Adam it does not unscale AMP gradients itself: a ``GradScaler`` (Lightning's
    16-mixed) unscales them before ``on_before_optimizer_step``, so clipping and the non-finite guard
    see true gradients, and skips the steps whose gradients overflowed.
    """

    def __init__(self, params: Any, lr: float = 1e-3, **kwargs: Any):
        super().__init__(params, lr=lr, **{"fused": True, **kwargs})
        self._step_supports_amp_scaling = False  # torch's fused Adam sets True: then nothing unscales before clipping

    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:  # Lightning passes one (which may clear the gradients: read them after)
            with torch.enable_grad():
                loss = closure()
        stepped = []  # (group, grads, states) of the groups with gradients
        for group in self.param_groups:
            grads = [p.grad for p in group["params"]]
            if any(g is not None for g in grads):
                stepped.append((group, grads, [self.state.get(p) for p in group["params"]]))
        if not all(self._plain(*args) for args in stepped):
            self._torch_step()
            return loss
        with torch.no_grad():
            for group, grads, states in stepped:
                steps = [s["step"] for s in states]
                beta1, beta2 = group["betas"]
                _foreach_add_(steps, 1)
                _fused_adam_(
                    group["params"], grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
                    steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                    weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
                )
        return loss

    def _torch_step(self) -> None:
        """torch's ``Adam.step`` without the wrapper that runs the step hooks and the profiler's
        record: this step's own wrapper ran them already (torch wraps every optimizer class's
        ``step``, its ``Adam``'s once one is built)."""
        step = torch.optim.Adam.step
        if getattr(step, "hooked", False):
            step = getattr(step, "__wrapped__", step)
        step(self)

    def _plain(self, group: dict[str, Any], grads: list[Tensor | None], states: list[Any]) -> bool:
        """Whether this step is one the short path takes exactly as torch's step would."""
        if _fused_adam_ is None or _foreach_add_ is None:
            return False
        numbers = not any(isinstance(v, Tensor) for v in (group["lr"], group["eps"], group["weight_decay"], *group["betas"]))
        options = group["fused"] and not (group["amsgrad"] or group["capturable"] or group["differentiable"]
                                          or group["decoupled_weight_decay"])
        scaled = getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None
        return (numbers and options and not scaled
                and all(g is not None for g in grads) and all(states) and not any(g.is_sparse for g in grads)
                and len({(p.device, p.dtype) for p in group["params"]}) == 1)
