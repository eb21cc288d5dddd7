"""Assertions shared by several test files."""

import torch


def assert_same_gradients(module: torch.nn.Module, loss_a: torch.Tensor, loss_b: torch.Tensor) -> None:
    """Both losses give the same gradient on every parameter of ``module.policy``."""
    grads = []
    for loss in (loss_a, loss_b):
        module.zero_grad()
        loss.backward()
        grads.append([p.grad.clone() for p in module.policy.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
