"""It learns: each CartPole config reaches the solved criterion (mean of the last 100 training
episodes ≥ 475) within its budget on most of several seeds. Floats differ between CPUs and an RL
run amplifies the difference, so no single seed is trusted to solve everywhere: each test trains
five seeds and needs a majority, sized by the solve rates that ``benchmarks/robustness.py``
measures on 20 seeds the configs were not tuned on (the README's table). Slow-marked; CI runs them.

With a config that solves a fraction p of seeds, a test needing k of 5 fails by chance with
probability P(Binomial(5, p) < k): for the CartPole configs (p ≥ 0.95) and k = 3 that is < 0.2%;
for the seed recipe (p = 0.75) and k = 2 it is 1.6%; for Pendulum (p ≥ 0.9) and k = 3, < 1%.
"""

from pathlib import Path

import lightning as L
import pytest
import torch

from pg_lightning import StopWhenSolved
from pg_lightning.registry import model_from_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SEEDS = range(5)


def solve(config: str, seed: int, threshold: float | None = None) -> tuple[int | None, float | None]:
    """``(env steps when solved or None, final last-100 mean)`` of one seeded run of ``config``."""
    torch.set_num_threads(1)
    model = model_from_config(str(CONFIGS / config), seed=seed)
    solved = StopWhenSolved(threshold=threshold)
    trainer = L.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[solved])
    trainer.fit(model)
    assert solved.solved_at is None or solved.solved_at <= model.hparams.max_env_steps
    return solved.solved_at, model.return_last100


@pytest.mark.slow
@pytest.mark.parametrize("config", ["cartpole_reinforce_baseline.yaml", "cartpole_a2c.yaml", "cartpole_ppo.yaml"])
def test_each_algorithm_solves_cartpole_on_most_seeds(config):
    runs = [solve(config, seed) for seed in SEEDS]
    assert sum(at is not None for at, _ in runs) >= 3, runs


@pytest.mark.slow
def test_the_seed_recipe_learns_cartpole():
    """The textbook recipe (lr 1e-2, one episode per update) is unstable: about a quarter of the
    seeds stall or collapse, as in the plain loop. At least two of five must solve."""
    runs = [solve("cartpole_reinforce.yaml", seed) for seed in SEEDS]
    assert sum(at is not None for at, _ in runs) >= 2, runs


@pytest.mark.slow
def test_ppo_learns_pendulum_with_continuous_actions():
    runs = [solve("pendulum_ppo.yaml", seed, threshold=-250) for seed in SEEDS]
    assert sum(at is not None for at, _ in runs) >= 3, runs
