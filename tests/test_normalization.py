"""Normalisation: RunningMeanStd's merge, clip and scale; the Normalizer's update from a batch's
tensors (pooled moments, the running discounted return carried across batches and restarted),
its reward scaling and its checkpoint state."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from helpers import quiet_trainer
from torch.testing import assert_close

from pg_lightning import A2C
from pg_lightning.normalization import Normalizer, RunningMeanStd

ONE_PROCESS = SimpleNamespace(world_size=1)  # what distributed's reductions read of a Trainer


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- RunningMeanStd ------------------------------------------------------------------------
def test_running_mean_std_two_batches_equal_concatenation():
    rms = RunningMeanStd((3,))
    x1 = 2.0 + 3.0 * torch.randn(50, 3, generator=gen(0), dtype=torch.float64)
    x2 = -1.0 + 0.5 * torch.randn(70, 3, generator=gen(1), dtype=torch.float64)
    for x in (x1, x2):
        rms.update(x.mean(0).float(), x.var(0, correction=0).float(), x.shape[0])
    both = torch.cat([x1, x2])
    assert_close(rms.mean, both.mean(0).float(), atol=1e-5, rtol=1e-5)
    assert_close(rms.var, both.var(0, correction=0).float(), atol=1e-5, rtol=1e-5)
    assert rms.count.dtype == torch.int64 and int(rms.count) == 120


def test_running_mean_std_first_update_and_empty_batch():
    rms = RunningMeanStd(())
    rms.update(torch.tensor(5.0), torch.tensor(2.0), 4)
    assert_close(rms.mean, torch.tensor(5.0))
    assert_close(rms.var, torch.tensor(2.0))
    rms.update(torch.tensor(100.0), torch.tensor(100.0), 0)  # ignored
    assert_close(rms.mean, torch.tensor(5.0))
    assert_close(rms.var, torch.tensor(2.0))
    assert int(rms.count) == 4


def test_running_mean_std_normalize_clamps_and_scales():
    rms = RunningMeanStd((3,), clip=5.0)
    rms.update(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([4.0, 1.0, 1.0]), 10)
    out = rms.normalize(torch.tensor([[101.0, -100.0, 0.5]]))
    # (101 - 1) / 2 = 50 -> clamped to 5;  -100 -> -5;  0.5 / 1 = 0.5
    assert_close(out, torch.tensor([[5.0, -5.0, 0.5]]), atol=1e-6, rtol=1e-6)
    assert_close(rms.normalize(torch.tensor([3.0, 1.0, -2.0])), torch.tensor([1.0, 1.0, -2.0]),
                 atol=1e-6, rtol=1e-6)
    # scale divides by the std without centring
    assert_close(rms.scale(torch.tensor([4.0, 3.0, 3.0])), torch.tensor([2.0, 3.0, 3.0]),
                 atol=1e-6, rtol=1e-6)


def test_running_mean_std_statistics_travel_in_state_dict():
    rms = RunningMeanStd((2,))
    rms.update(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), 5)
    other = RunningMeanStd((2,))
    other.load_state_dict(rms.state_dict())
    assert_close(other.mean, torch.tensor([1.0, 2.0]))
    assert_close(other.var, torch.tensor([3.0, 4.0]))
    assert int(other.count) == 5



# ---- Normalizer ----------------------------------------------------------------------------
def two_batches():
    """Two [T=3, N=2] batches: column 0 ends an episode at t=1 of the first, column 1 at t=2 of the
    second; the step after column 0's end is an autoreset step (mask False)."""
    rewards = torch.tensor([[[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]], [[2.0, 1.0], [1.0, 1.0], [-2.0, 0.5]]])
    terminated = torch.zeros(2, 3, 2, dtype=torch.bool)
    terminated[0, 1, 0] = True
    truncated = torch.zeros(2, 3, 2, dtype=torch.bool)
    truncated[1, 2, 1] = True
    mask = torch.ones(2, 3, 2, dtype=torch.bool)
    mask[0, 2, 0] = False
    observations = torch.randn(2, 3, 2, 4, generator=gen(3))
    return [dict(observations=observations[i], mask=mask[i], rewards=rewards[i], terminated=terminated[i],
                 truncated=truncated[i]) for i in range(2)]


def test_normalizer_folds_real_transitions_into_both_statistics_and_carries_the_running_return():
    obs_rms = RunningMeanStd((4,))
    normalizer = Normalizer(obs_rms, normalize_rewards=True, gamma=0.5, columns=2)
    batches = two_batches()
    for batch in batches:
        normalizer.update(ONE_PROCESS, **batch)
    # R_t = r_t + γ R_{t-1} per column, restarted after a done, across the two batches
    # column 0: 1, 0.5 + 0.5 = 1 (done), 0 (autoreset, masked), 2, 1 + 1 = 2, -2 + 1 = -1
    # column 1: 2, -1 + 1 = 0, 3, 1 + 1.5 = 2.5, 1 + 1.25 = 2.25, 0.5 + 1.125 = 1.625 (done)
    real = torch.tensor([1.0, 1.0, 2.0, 2.0, -1.0, 2.0, 0.0, 3.0, 2.5, 2.25, 1.625], dtype=torch.float64)
    assert int(normalizer.rewards.count) == 11
    assert_close(normalizer.rewards.mean.double(), real.mean(), rtol=1e-6, atol=1e-6)
    assert_close(normalizer.rewards.var.double(), real.var(correction=0), rtol=1e-5, atol=1e-6)
    # carried: column 0's return goes on, column 1's episode ended with the batch
    assert_close(normalizer.running_return, torch.tensor([-1.0, 0.0]))
    observations = torch.cat([b["observations"][b["mask"]] for b in batches]).double()
    assert int(obs_rms.count) == 11
    assert_close(obs_rms.mean.double(), observations.mean(0), rtol=1e-5, atol=1e-6)
    normalizer.restart()
    assert torch.equal(normalizer.running_return, torch.zeros(2))


def test_normalizer_scales_rewards_by_the_running_std_only_when_asked():
    rewards = torch.tensor([[2.0, -4.0]])
    assert Normalizer(None, normalize_rewards=False, gamma=0.9, columns=2).scale_rewards(rewards) is rewards
    normalizer = Normalizer(None, normalize_rewards=True, gamma=0.9, columns=2)
    normalizer.rewards.update(torch.tensor(5.0), torch.tensor(4.0), 10)
    assert_close(normalizer.scale_rewards(rewards), torch.tensor([[1.0, -2.0]]), rtol=1e-6, atol=1e-6)  # ÷ std 2, not centred


def test_normalizer_checkpoints_the_reward_statistics_and_not_the_policys():
    normalizer = Normalizer(RunningMeanStd((4,)), normalize_rewards=True, gamma=0.9, columns=2)
    assert sorted(normalizer.state_dict()) == ["rewards.count", "rewards.mean", "rewards.var"]
    assert list(Normalizer(RunningMeanStd((4,)), normalize_rewards=False, gamma=0.9, columns=2).state_dict()) == []


def test_a_checkpoint_with_the_old_reward_scaler_keys_loads_its_reward_statistics(tmp_path):
    module = A2C(seed=0, num_envs=2, n_steps=8, normalize_rewards=True)
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(module)
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    weights = checkpoint["state_dict"]
    for key in [k for k in weights if k.startswith("normalizer.rewards.")]:
        weights["reward_scaler." + key.removeprefix("normalizer.rewards.")] = weights.pop(key)
    torch.save(checkpoint, path)
    loaded = A2C.load_from_checkpoint(path)
    assert int(loaded.normalizer.rewards.count) == int(module.normalizer.rewards.count) > 0
    assert torch.equal(loaded.normalizer.rewards.var, module.normalizer.rewards.var)
