"""Helpers shared by several test files."""

import lightning as L
import torch


def quiet_trainer(**kwargs) -> L.Trainer:
    """A Trainer for short in-process runs: no logger, checkpoints, bar or summary; ``max_epochs=-1``."""
    defaults = dict(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


def assert_same_gradients(module: torch.nn.Module, loss_a: torch.Tensor, loss_b: torch.Tensor) -> None:
    """Both losses give the same gradient on every parameter of ``module.policy``."""
    grads = []
    for loss in (loss_a, loss_b):
        module.zero_grad()
        loss.backward()
        grads.append([p.grad.clone() for p in module.policy.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
