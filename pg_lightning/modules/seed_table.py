"""Many seeds trained as one (``SeedStack``): their batches stacked, their losses summed, each
seed's learning rate annealed on its own; the base's hooks call these when ``configure_optimizers``
stacked the seeds (``StackedAdam``)."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from pg_lightning.agent import Agent
from pg_lightning.batch import Batch
from pg_lightning.collection_worker import CollectionWorker, RemoteCollector, worker_pays
from pg_lightning.observations import seed_major
from pg_lightning.optim import StackedAdam
from pg_lightning.seed_stack import SeedStack, stackable


class SeedTable(L.LightningModule):
    """The stacked update of a module with ``agents``, ``stack`` and ``end_update``; the algorithms
    give ``stacked_losses``. Also the collection worker that plays half the seeds' envs."""

    collection_worker: CollectionWorker | None = None  # during a many-seeds fit on more than one core
    shares_collection = True  # whether a worker's round trip per batch pays for this algorithm's batches

    def share_collection(self) -> None:
        """With many seeds and a second core, fork a ``CollectionWorker`` that plays the second half
        of the seeds' envs beside this process (their collectors move to it), once per fit. Not on
        an accelerator: a forked process cannot use CUDA, and its policies' weights would be there."""
        collectors = [agent.collector for agent in self.agents]
        if not self.shares_collection or self.device.type != "cpu" or self.collection_worker is not None or any(
                isinstance(c, RemoteCollector) for c in collectors):
            return
        if not worker_pays(collectors):
            return
        shared = range(self.num_seeds // 2, self.num_seeds)
        self.collection_worker = CollectionWorker({k: (collectors[k], self.agents[k].policy) for k in shared})
        for k in shared:
            self.agents[k].collector = RemoteCollector(self.collection_worker, k, collectors[k])

    def end_collection(self) -> None:
        """End the collection worker once no seed's collector is in it (``teardown`` of a fit takes
        their states and drops them first; a ``validate`` after a failed fit leaves them there)."""
        if self.collection_worker is not None and not any(isinstance(a.collector, RemoteCollector) for a in self.agents):
            self.collection_worker.close()
            self.collection_worker = None

    def stack_seeds(self) -> bool:
        """Stack the seeds' policies into one table (``SeedStack``) if they are the network it
        trains; whether it did. Called when the optimizer is made, after the module moved to its device."""
        policies = [agent.policy for agent in self.agents]
        self.stack = SeedStack(policies) if stackable(policies) else None
        return self.stack is not None

    def set_seed_rates(self, optimizer: StackedAdam) -> None:
        """With ``anneal_lr``, each seed's learning-rate scale for this update: ``annealed(1)`` at its
        own progress before the update (where a one-seed run's scheduler left its rate)."""
        if self.hparams.anneal_lr:
            scales = [self.annealed(1.0, agent) for agent in self.agents]
            optimizer.lr_scale.copy_(torch.tensor(scales, dtype=optimizer.lr_scale.dtype))

    def learning_rate(self, index: int) -> float:
        """Seed index ``index``'s learning rate in this update."""
        optimizer = self.trainer.optimizers[0]
        if isinstance(optimizer, StackedAdam):
            return optimizer.param_groups[0]["lr"] * float(optimizer.lr_scale[index])
        return optimizer.param_groups[index]["lr"]

    def stacked_batch(self, pairs: list[tuple[Agent, Batch]]) -> tuple[Tensor, Batch]:
        """The seeds of ``pairs`` (``rows``: their indices into the K) and their batches as one
        ``Batch`` of ``[T, K', N, ...]`` fields, padded at the end of time to the longest (padding
        terminated and masked out), each seed's rewards scaled by its own normaliser (``scale_rewards``).
        Its episode fields and counts are not kept: each seed's own batch carries them."""
        rows = torch.tensor([self.agents.index(agent) for agent, _ in pairs], device=self.device)
        batches = [batch for _, batch in pairs]

        def stacked(field: str, padding: float | bool = 0.0) -> Tensor:
            return pad_sequence([getattr(batch, field) for batch in batches], padding_value=padding)

        rewards = pad_sequence([agent.normalizer.scale_rewards(batch.rewards) for agent, batch in pairs])
        empty = rewards.new_zeros(0)
        return rows, Batch(stacked("observations"), stacked("actions"), rewards, stacked("terminated", True),
                           stacked("truncated", False), stacked("mask", False), stacked("next_observations"), empty, empty)

    def stacked_update(self, pairs: list[tuple[Agent, Batch]], optimizer: StackedAdam) -> Tensor | None:
        """One update of the training seeds together, in automatic optimisation: the summed loss of
        those with transitions, only they stepping (and, after the guard, only those with finite
        gradients); ``None`` when none has any."""
        self.set_seed_rates(optimizer)
        optimizer.stepping.zero_()
        pairs = self.seeds_with_transitions(pairs)
        loss = None
        if pairs:
            rows, batch = self.stacked_batch(pairs)
            terms = self.stacked_losses(rows, batch)
            optimizer.stepping[rows] = True
            for position, (agent, seed_batch) in enumerate(pairs):
                self.end_update(seed_batch, {name: value[position] for name, value in terms.items()}, agent)
            loss = terms["loss"].sum()
        self.end_seeds_update()
        return loss

    def seeds_with_transitions(self, pairs: list[tuple[Agent, Batch]]) -> list[tuple[Agent, Batch]]:
        """``pairs`` without the seeds whose batch holds no transition (a rollout of autoreset
        steps only): their update ends here, counting their env steps, with no loss."""
        for agent, batch in pairs:
            if not batch.num_steps:
                self.end_update(batch, {}, agent)
        return [(agent, batch) for agent, batch in pairs if batch.num_steps]

    def stacked_inputs(self, rows: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """A ``stacked_batch``'s observations (each seed's normalised) and actions, ``[K', T·N, ...]``."""
        return self.stack.normalize(seed_major(batch.observations), rows), seed_major(batch.actions)

    def guard_and_clip_seeds(self, optimizer: StackedAdam) -> None:
        """``GradientStep.guard_and_clip`` of every stepping seed on its own rows of the table: each
        clipped by its own norm; a seed with a non-finite gradient skips the step (and is counted)."""
        finite = self.stack.guard_and_clip(self.hparams.max_grad_norm).tolist()
        for index in optimizer.stepping.nonzero().flatten().tolist():
            self.agents[index].gradients.finite_everywhere(self.trainer, finite[index])
        optimizer.stepping &= torch.tensor(finite, device=optimizer.stepping.device)

    def stacked_losses(self, rows: Tensor, batch: Batch) -> dict[str, Tensor]:
        """``compute_losses`` of the seeds ``rows`` at once, on their ``stacked_batch``: each term ``[K']``."""
        raise NotImplementedError
