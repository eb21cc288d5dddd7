"""Per-step cost of ``pg_lightning.optim.Adam``'s short path against its fallback, torch's own
``Adam.step`` (what runs on a torch without ``_fused_adam_`` / ``_foreach_add_``), and of each
gradient utility against its public fallback (``get_total_norm``, per-tensor ``mul_``,
``isfinite``). Networks: the seed recipe's 4-128-2 policy and PPO's 4-64-64 actor and critic.
Prints the median microseconds per call over ``--repeats`` blocks of ``--calls`` calls each.

    python benchmarks/optim_step.py [--calls 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections.abc import Callable

import torch

from pg_lightning import optim

NETWORKS = {
    "4-128-2": [(128, 4), (128,), (2, 128), (2,)],
    "4-64-64 x2": [(64, 4), (64,), (64, 64), (64,), (2, 64), (2,)] * 2,
}
OPS = ("_foreach_norm", "_foreach_mul_", "_foreach_add_", "_fused_adam_", "_non_finite_check_and_unscale_")


def block_us(call: Callable[[], object], calls: int) -> float:
    """The mean time of one ``call`` over ``calls`` calls, in microseconds."""
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def public_ops() -> contextlib.AbstractContextManager[None]:
    """The ``optim`` module as on a torch without its private ops."""
    stack = contextlib.ExitStack()
    for name in OPS:
        stack.callback(setattr, optim, name, getattr(optim, name))
        setattr(optim, name, None)
    return stack


def medians_us(make: Callable[[], Callable[[], object]], calls: int, repeats: int) -> tuple[float, float]:
    """Median µs per call of ``make()``'s call with the private ops and without, blocks alternating
    (so that drift in a shared machine's speed hits both alike)."""
    fast = make()
    with public_ops():
        public = make()
    times: tuple[list[float], list[float]] = ([], [])
    for repeat in range(repeats + 1):  # the first round warms up
        fast_us = block_us(fast, calls)
        with public_ops():
            public_us = block_us(public, calls)
        if repeat:
            times[0].append(fast_us)
            times[1].append(public_us)
    return statistics.median(times[0]), statistics.median(times[1])


def adam_step(shapes: list[tuple[int, ...]]) -> Callable[[], object]:
    """One ``optim.Adam`` step on gradients that stay in place (as between backward passes)."""
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape) * 1e-3
    optimizer = optim.Adam(params, lr=1e-4)
    optimizer.step()  # creates the state (torch's step either way)
    return optimizer.step


def utilities(shapes: list[tuple[int, ...]]) -> dict[str, Callable[[], Callable[[], object]]]:
    """Each gradient utility on gradients of ``shapes`` (made anew for each variant)."""
    grads = [torch.randn(s) for s in shapes]
    return {
        "gradient_norm": lambda: lambda: optim.gradient_norm(grads),
        "clip_gradients": lambda: lambda: optim.clip_gradients(grads, 1e9, optim.gradient_norm(grads)),
        "gradients_finite": lambda: lambda: optim.gradients_finite(grads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU, 1 thread; median µs per call: private path / public fallback")
    for network, shapes in NETWORKS.items():
        cases = {"Adam.step": functools.partial(adam_step, shapes), **utilities(shapes)}
        for name, make in cases.items():
            fast, public = medians_us(make, args.calls, args.repeats)
            print(f"{network:>11} {name:>16}: {fast:7.1f} / {public:7.1f}  (fallback {public / fast:.2f}x)")


if __name__ == "__main__":
    main()
