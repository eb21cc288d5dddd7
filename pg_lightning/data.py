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
from pg_lightning.collection_worker import RemoteCollector
from pg_lightning.collector import Collector
from pg_lightning.policies import ActorCritic


class CollectorDataset(IterableDataset):
    """Yields one batch played by ``policy``'s current weights: the collector's ``method``
    (``rollout`` or ``episodes``) for ``amount`` (steps or episodes). ``start`` / ``finish`` split
    the batch in two where the collector plays elsewhere (a ``RemoteCollector``)."""

    method = ""

    def __init__(self, collector: Collector | RemoteCollector, policy: ActorCritic, amount: int):
        self.collector, self.policy, self.amount = collector, policy, amount

    def start(self) -> None:
        """Set a remote collector playing the next batch (nothing to do for a local one)."""
        if isinstance(self.collector, RemoteCollector):
            self.collector.start(self.method, self.policy, self.amount)

    def finish(self) -> Batch:
        """The batch: a remote collector's, or this process's own, played now."""
        if isinstance(self.collector, RemoteCollector):
            return self.collector.finish()
        return getattr(self.collector, self.method)(self.policy, self.amount)

    def __iter__(self) -> Iterator[Batch]:
        self.start()
        yield self.finish()

    def __len__(self) -> int:
        return 1


class EpisodeDataset(CollectorDataset):
    """Yields one batch of ``episodes_per_batch`` whole episodes played by ``policy``'s current weights."""

    method = "episodes"

    def __init__(self, collector: Collector | RemoteCollector, policy: ActorCritic, episodes_per_batch: int = 1):
        super().__init__(collector, policy, episodes_per_batch)


class RolloutDataset(CollectorDataset):
    """Yields one ``n_steps × num_envs`` rollout played by ``policy``'s current weights."""

    method = "rollout"

    def __init__(self, collector: Collector | RemoteCollector, policy: ActorCritic, n_steps: int):
        super().__init__(collector, policy, n_steps)


class SeedsDataset(IterableDataset):
    """A many-seeds run's batch: each seed's own dataset's batch, ``None`` for a seed that has
    stopped (``active()`` says which are still training), so a stopped seed plays no more. Seeds
    played by a collection worker are set going first, then this process plays its own."""

    def __init__(self, datasets: Sequence[CollectorDataset], active: Callable[[], list[bool]]):
        self.datasets, self.active = datasets, active

    def __iter__(self) -> Iterator[list[Batch | None]]:
        playing = [dataset for dataset, on in zip(self.datasets, self.active()) if on]
        for dataset in playing:
            dataset.start()
        remote = [dataset.collector for dataset in playing if isinstance(dataset.collector, RemoteCollector)]
        try:  # this process's seeds first, while the worker plays its own; the worker's in the order they started
            batches = {id(d): d.finish() for d in playing if not isinstance(d.collector, RemoteCollector)}
            batches |= {id(d): d.finish() for d in playing if isinstance(d.collector, RemoteCollector)}
        except BaseException:
            if remote:
                remote[0].worker.drain()  # the round's other batches: nobody will read them
            raise
        yield [batches[id(dataset)] if id(dataset) in batches else None for dataset in self.datasets]

    def __len__(self) -> int:
        return 1
