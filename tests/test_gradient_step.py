"""GradientStep: the clip to max_grad_norm, the non-finite guard that clears the gradients and
counts a skipped update, and the TrainingError after max_skipped_updates in a row."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pg_lightning.errors import TrainingError
from pg_lightning.gradient_step import GradientStep
from pg_lightning.run_statistics import RunStatistics

FP32 = SimpleNamespace(world_size=1, precision_plugin=SimpleNamespace())  # one process, no GradScaler


def optimizer_with_gradients(*grads):
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    return torch.optim.SGD(params, lr=1.0), params


def test_clips_the_total_norm_to_max_grad_norm():
    optimizer, params = optimizer_with_gradients(torch.tensor([3.0, 0.0]), torch.tensor([4.0]))  # norm 5
    GradientStep(RunStatistics(), 0.5, 3).guard_and_clip(FP32, optimizer)
    assert float(torch.nn.utils.get_total_norm([p.grad for p in params])) == pytest.approx(0.5, rel=1e-5)
    torch.testing.assert_close(params[0].grad, torch.tensor([0.3, 0.0]), rtol=1e-5, atol=1e-6)  # direction kept


def test_leaves_gradients_below_the_limit_or_without_a_limit_alone():
    for limit in (10.0, None):
        optimizer, params = optimizer_with_gradients(torch.tensor([3.0, 4.0]))
        GradientStep(RunStatistics(), limit, 3).guard_and_clip(FP32, optimizer)
        assert torch.equal(params[0].grad, torch.tensor([3.0, 4.0]))


@pytest.mark.parametrize("limit", [0.5, None])  # the guard reads the norm, or checks the entries
def test_non_finite_gradients_are_cleared_and_counted_and_too_many_in_a_row_raise(limit):
    stats = RunStatistics()
    stats.env_steps = 123
    step = GradientStep(stats, limit, max_skipped_updates=2)
    optimizer, params = optimizer_with_gradients(torch.tensor([1.0, float("nan")]), torch.tensor([1.0]))
    step.guard_and_clip(FP32, optimizer)
    assert all(p.grad is None for p in params)  # the step then changes nothing
    assert stats.skipped_updates == 1
    step.guard_and_clip(FP32, optimizer_with_gradients(torch.tensor([2.0]))[0])  # a finite step resets the run
    assert step.skipped_in_a_row == 0 and stats.skipped_updates == 1
    step.guard_and_clip(FP32, optimizer_with_gradients(torch.tensor([float("inf")]))[0])
    with pytest.raises(TrainingError, match="2 updates in a row.*env step 123"):
        step.guard_and_clip(FP32, optimizer_with_gradients(torch.tensor([float("nan")]))[0])
    assert stats.skipped_updates == 3
