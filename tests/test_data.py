"""The datasets a LightningModule trains from: one batch of whole episodes or one rollout per iteration."""

from helpers import collector_and_policy as make

from pg_lightning import EpisodeDataset, RolloutDataset


def test_datasets_yield_one_batch_per_iteration():
    collector, policy = make(num_envs=2)
    assert len(list(EpisodeDataset(collector, policy, 2))) == 1
    rollouts = list(RolloutDataset(collector, policy, 16))
    assert len(rollouts) == 1 and rollouts[0].observations.shape == (16, 2, 4)
