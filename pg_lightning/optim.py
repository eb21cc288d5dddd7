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
    wrapper of torch's method (once per gradient step); a ``StackedAdam``'s table of gradients is
    zeroed instead (its leaves' gradients are views of it)."""
    if isinstance(optimizer, StackedAdam):
        optimizer.zero_grad()
        return
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


class StackedAdam(torch.optim.Optimizer):
    """Adam for K seeds whose parameters are the column blocks of one ``[K, N]`` table (``SeedStack``):
    Adam is elementwise, so this is K independent Adams, each with its own step count (bias
    correction) and learning-rate scale (``lr_scale``, its annealing), run as a dozen ops on the
    whole table. Only the seeds in ``stepping`` change in a step: the others keep their weights,
    moments and step count, as if the step had not happened for them.

    Its param group holds the leaves (``[K, *shape]`` views of the table) with one ``lr`` that
    schedulers and ``LearningRateMonitor`` see; ``state_dict`` keeps each leaf's moments as
    ``[K, *shape]`` tensors and the steps as ``[K]``, so seed k's slice is a one-seed Adam's state.
    Gradients are unscaled before ``on_before_optimizer_step`` under AMP, as for ``Adam``.
    """

    def __init__(self, leaves: list[Tensor], table: Tensor, grads: Tensor, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        # the keys of torch's Adam too, so that seed k's slice of the state loads into one (seed_checkpoints)
        super().__init__(leaves, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": 0.0, "amsgrad": False,
                                  "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
                                  "fused": True, "decoupled_weight_decay": False})
        self.table, self.grads = table, grads
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(table), torch.zeros_like(table)
        self.steps = torch.zeros(table.shape[0], dtype=torch.float32, device=table.device)
        self.lr_scale = torch.ones(table.shape[0], dtype=table.dtype, device=table.device)
        self.stepping = torch.ones(table.shape[0], dtype=torch.bool, device=table.device)
        self._step_supports_amp_scaling = False
        self._point_state()

    def _view(self, table: Tensor, leaf: Tensor) -> Tensor:
        return table.as_strided(leaf.shape, leaf.stride(), leaf.storage_offset())

    def _point_state(self) -> None:
        """Each leaf's state: views of the moment tables and the shared step counts."""
        for leaf in self.param_groups[0]["params"]:
            self.state[leaf] = {"step": self.steps, "exp_avg": self._view(self.exp_avg, leaf),
                                "exp_avg_sq": self._view(self.exp_avg_sq, leaf)}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the table of gradients (whatever ``set_to_none`` says: the leaves' gradients are
        its views), pointing a leaf's ``grad`` back into it where something replaced it."""
        self.grads.zero_()
        for leaf in self.param_groups[0]["params"]:
            if leaf.grad is None or leaf.grad.data_ptr() != self._view(self.grads, leaf).data_ptr():
                leaf.grad = self._view(self.grads, leaf)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loading, then the loaded moments and steps copied into the tables."""
        super().load_state_dict(state_dict)
        leaves = self.param_groups[0]["params"]
        loaded = [self.state[leaf] for leaf in leaves]
        with torch.no_grad():
            for leaf, state in zip(leaves, loaded):
                self._view(self.exp_avg, leaf).copy_(state["exp_avg"])
                self._view(self.exp_avg_sq, leaf).copy_(state["exp_avg_sq"])
            self.steps.copy_(loaded[0]["step"])
        self._point_state()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        on = self.stepping.unsqueeze(1)
        grads = torch.where(on, self.grads, 0.0)
        weight = on.to(self.table.dtype)
        self.steps += self.stepping
        self.exp_avg.lerp_(grads, weight * (1 - beta1))
        self.exp_avg_sq.lerp_(grads * grads, weight * (1 - beta2))
        steps = self.steps.clamp_min(1).to(self.table.dtype).unsqueeze(1)  # a seed that never stepped moves by 0
        step_size = weight * group["lr"] * self.lr_scale.unsqueeze(1) / (1 - beta1 ** steps)
        denom = (self.exp_avg_sq.sqrt() / (1 - beta2 ** steps).sqrt()).add_(group["eps"])
        self.table.sub_(self.exp_avg / denom * step_size)
        return loss
