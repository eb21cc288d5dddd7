"""GradientStep: the clip to max_grad_norm, the non-finite guard that clears the gradients and
counts a skipped update, and the TrainingError after max_skipped_updates in a row; the same in
whole fits (non-finite losses and gradients skipped), and clipping of unscaled gradients under
mixed precision (the "gpu" cases run in benchmarks/gpu.sh)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers import quiet_trainer as trainer
from lightning.pytorch.plugins.precision import MixedPrecision

from pg_lightning import A2C, PPO, Reinforce, gradient_step
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


# ---- in a fit: non-finite updates ----------------------------------------------------------------
class Poisoned(Reinforce):
    """Reinforce whose loss (or gradient) is non-finite on the updates listed in ``bad``."""

    def __init__(self, bad=(), where="loss", **kwargs):
        super().__init__(**kwargs)
        self.bad, self.where, self.updates, self.poisoned_losses = set(bad), where, 0, []

    def compute_losses(self, batch, agent=None):
        terms = super().compute_losses(batch, agent)
        self.updates += 1
        if self.updates in self.bad:
            if self.where == "loss":
                terms["loss"] = terms["loss"] * float("nan")
            else:  # adds sqrt(0) = 0 to the loss, whose gradient 1 / (2 sqrt(0)) is infinite
                bias = self.policy.actor_out.bias
                terms["loss"] = terms["loss"] + torch.sqrt(bias - bias.detach()).sum()
            self.poisoned_losses.append(float(terms["loss"]))
        return terms


@pytest.mark.parametrize("where", ["loss", "gradient"])
@pytest.mark.parametrize("max_grad_norm", [None, 1.0])  # the finiteness check alone, or the clipping norm's
def test_non_finite_updates_are_skipped_and_counted(where, max_grad_norm):
    module = Poisoned(bad={2, 3}, where=where, seed=0, max_skipped_updates=5, max_grad_norm=max_grad_norm)
    weights = []

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            weights.append([p.detach().clone() for p in pl_module.parameters()])

    trainer(max_epochs=5, callbacks=[Snapshot()]).fit(module)
    assert module.skipped_updates == 2
    # the "gradient" case is a finite loss with a non-finite gradient, which the guard must catch too
    assert all(math.isfinite(v) for v in module.poisoned_losses) == (where == "gradient")
    for before, after in ((weights[0], weights[1]), (weights[1], weights[2])):  # updates 2, 3 did nothing
        assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not all(torch.equal(a, b) for a, b in zip(weights[2], weights[3]))  # update 4 did
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_too_many_non_finite_updates_in_a_row_stop_training():
    module = Poisoned(bad=range(1, 100), seed=0, max_skipped_updates=3)
    with pytest.raises(TrainingError, match="3 updates in a row had a non-finite loss or gradient"):
        trainer(max_epochs=10).fit(module)


# ---- mixed precision --------------------------------------------------------------------------
DEVICES = ["cpu", pytest.param("cuda", id="gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                          reason="needs a GPU"))]


def amp(precision: str, device: str) -> MixedPrecision:
    """Lightning's plugin for ``precision``, with a GradScaler for 16-mixed: CUDA's default, but a first
    scale of 2^10 (2^16 overflows float16 on these gradients, and the scaler skips steps until it is lower)."""
    scaler = torch.amp.GradScaler(device, init_scale=2.0**10) if precision == "16-mixed" else None
    return MixedPrecision(precision, device, scaler=scaler)


def gradient_norms(monkeypatch) -> list[float]:
    """The norms on_before_optimizer_step clips with, recorded as they are computed."""
    norms, norm = [], gradient_step.gradient_norm
    monkeypatch.setattr(gradient_step, "gradient_norm", lambda grads: (result := norm(grads), norms.append(float(result)))[0])
    return norms


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("cls", [A2C, PPO])  # automatic and manual optimisation
def test_mixed_precision_clips_the_unscaled_gradients(cls, precision, device, monkeypatch):
    first_norms = []
    for plugins in ([], [amp(precision, device)]):
        norms = gradient_norms(monkeypatch)
        module = cls(seed=0, max_grad_norm=0.5, n_steps=16, num_envs=2)
        trainer(max_epochs=2, accelerator=device, devices=1, plugins=plugins).fit(module)
        assert module.skipped_updates == 0 and all(math.isfinite(n) for n in norms)
        first_norms.append(norms[0])
    fp32, mixed = first_norms
    assert mixed == pytest.approx(fp32, rel=0.05)  # not 2^10 times larger


class TorchFusedAdam(A2C):
    """A2C with torch's fused Adam, which unscales AMP gradients in its own step."""

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, fused=True)


def test_an_optimizer_that_unscales_itself_is_unscaled_before_clipping_under_16_mixed(monkeypatch):
    first_norms = []
    for plugins in ([], [amp("16-mixed", "cpu")]):
        norms = gradient_norms(monkeypatch)
        module = TorchFusedAdam(seed=0, max_grad_norm=0.5, n_steps=16, num_envs=2)
        trainer(max_epochs=2, plugins=plugins).fit(module)
        assert all(math.isfinite(n) for n in norms)
        first_norms.append(norms[0])
    assert first_norms[1] == pytest.approx(first_norms[0], rel=0.05)  # not 2^10 times larger


class GradientNorms(L.Callback):
    """The gradients' norm Lightning clips (after the hooks), and the norm the optimizer steps with."""

    def __init__(self):
        self.before, self.stepped = [], []

    def on_train_start(self, trainer, pl_module):
        def record(optimizer, *args):
            return self.stepped.append(self.norm(pl_module))
        trainer.optimizers[0].register_step_pre_hook(record)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.before.append(self.norm(pl_module))

    @staticmethod
    def norm(module):
        return float(torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None]))


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_clip_val_clips_the_unscaled_gradients_under_16_mixed(device):
    norms = GradientNorms()
    module = Reinforce(seed=0)  # automatic optimisation, no clipping of its own
    trainer(max_epochs=3, accelerator=device, devices=1, gradient_clip_val=0.05, plugins=[amp("16-mixed", device)],
            callbacks=[norms]).fit(module)
    assert module.skipped_updates == 0 and len(norms.stepped) == len(norms.before) == 3
    assert all(0.05 < n < 100 for n in norms.before)  # unscaled (a 2^10 scale would make them ~1e3)
    assert all(n == pytest.approx(0.05, rel=1e-3) for n in norms.stepped)
