"""The IterableDatasets that feed Lightning, one policy update per batch.

``EpisodeDataset`` turns a ``Collector``'s transitions into batches of whole episodes (REINFORCE),
``RolloutDataset`` into fixed ``n_steps × num_envs`` rollouts (A2C, PPO). Each dataset yields
exactly one batch per iteration, so one Lightning epoch is one batch is one policy update, and every
transition of a batch is played by the weights it updates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from torch.utils.data import IterableDataset

from pg_lightning.batch import Batch
from pg_lightning.collector import Collector
from pg_lightning.policies import ActorCritic


class EpisodeDataset(IterableDataset):
    """Yields one batch of ``episodes_per_batch`` whole episodes played by ``policy``'s current weights."""

    def __init__(self, collector: Collector, policy: ActorCritic, episodes_per_batch: int = 1):
        self.collector, self.policy, self.episodes_per_batch = collector, policy, episodes_per_batch

    def __iter__(self) -> Iterator[Batch]:
        yield self.collector.episodes(self.policy, self.episodes_per_batch)

    def __len__(self) -> int:
        return 1


class RolloutDataset(IterableDataset):
    """Yields one ``n_steps × num_envs`` rollout played by ``policy``'s current weights."""

    def __init__(self, collector: Collector, policy: ActorCritic, n_steps: int):
        self.collector, self.policy, self.n_steps = collector, policy, n_steps

    def __iter__(self) -> Iterator[Batch]:
        yield self.collector.rollout(self.policy, self.n_steps)

    def __len__(self) -> int:
        return 1


class SeedsDataset(IterableDataset):
    """A many-seeds run's batch: each seed's own dataset's batch, ``None`` for a seed that has
    stopped (``active()`` says which are still training), so a stopped seed plays no more."""

    def __init__(self, datasets: Sequence[IterableDataset], active: Callable[[], list[bool]]):
        self.datasets, self.active = datasets, active

    def __iter__(self) -> Iterator[list[Batch | None]]:
        yield [next(iter(dataset)) if on else None for dataset, on in zip(self.datasets, self.active())]

    def __len__(self) -> int:
        return 1
