"""The guard and clip of every gradient step: the step is dropped on every process when some
process's gradients are not finite (a non-finite loss makes them so), and the gradient norm is
clipped to ``max_grad_norm``.

Both run on unscaled gradients, which under AMP exist only in Lightning's
``on_before_optimizer_step`` hook (its precision plugin unscales them right before it): the
module's hook calls ``GradientStep.guard_and_clip`` and the optimizer then steps.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from pg_lightning import distributed
from pg_lightning.errors import TrainingError
from pg_lightning.optim import clip_gradients, gradient_norm, gradients_finite
from pg_lightning.run_statistics import RunStatistics


class GradientStep:
    """Guard and clip before each optimizer step; skipped steps are counted in ``statistics``, and
    ``max_skipped_updates`` of them in a row raise a TrainingError."""

    def __init__(self, statistics: RunStatistics, max_grad_norm: float | None, max_skipped_updates: int) -> None:
        self.statistics = statistics
        self.max_grad_norm = max_grad_norm
        self.max_skipped_updates = max_skipped_updates
        self.skipped_in_a_row = 0

    def guard_and_clip(self, trainer: L.Trainer, optimizer: torch.optim.Optimizer,
                       params: list[torch.Tensor] | None = None) -> None:
        """Clip the gradient norm of ``params`` (default: all the optimizer's), or clear their
        gradients (the step then updates none of them) if they are not finite. On unscaled
        gradients: Lightning unscales them first for ``optim.Adam``; an optimizer that unscales in
        its own step (torch's fused ones, from an overridden ``configure_optimizers``) is unscaled
        here. With a 16-bit GradScaler, overflow is the scaler's to handle."""
        if params is None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
            scaler.unscale_(optimizer)  # its step then skips on the overflow this finds, unscaling nothing
        clip = self.max_grad_norm
        norm = gradient_norm(grads) if clip is not None else None
        if scaler is None and not self.finite_everywhere(
            trainer, math.isfinite(float(norm)) if norm is not None else gradients_finite(grads)
        ):
            for p in params:  # parameters without a gradient are not updated
                p.grad = None
            return
        if clip is not None:
            clip_gradients(grads, clip, norm)

    def finite_everywhere(self, trainer: L.Trainer, finite: bool) -> bool:
        """Whether ``finite`` holds on every process; if not, count a skipped update (and give up
        after ``max_skipped_updates`` in a row). Every process decides the same way."""
        if distributed.reduce(trainer, [float(finite)], "min")[0]:
            self.skipped_in_a_row = 0
            return True
        env_steps = self.statistics.env_steps
        self.statistics.skipped_updates += 1
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= self.max_skipped_updates:
            raise TrainingError(
                f"{self.skipped_in_a_row} updates in a row had a non-finite loss or gradient "
                f"(last at env step {env_steps}); lower lr or check the env's rewards"
            )
        rank_zero_warn(f"non-finite loss or gradient at env step {env_steps}: update skipped")
        return False
