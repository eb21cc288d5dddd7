"""Proximal policy optimisation with the clipped surrogate (Schulman et al. 2017)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau

from pg_lightning import distributed, losses, observations
from pg_lightning.agent import Agent
from pg_lightning.batch import Batch
from pg_lightning.envs import Vectorization, Wrappers
from pg_lightning.errors import require
from pg_lightning.lockstep import minibatch_plan
from pg_lightning.losses import Rows
from pg_lightning.modules.actor_critic import ActorCriticBase
from pg_lightning.modules.arguments import shared_args_documented
from pg_lightning.observations import flat_batch, seed_major
from pg_lightning.optim import StackedAdam
from pg_lightning.returns import standardize


class Transitions(NamedTuple):
    """A rollout's real transitions, flat, with what PPO's loss needs of each (the observations
    normalised: ``ActorCritic.normalize``)."""

    observations: Tensor | dict[str, Tensor]
    actions: Tensor
    old_log_probs: Tensor
    old_values: Tensor
    advantages: Tensor
    returns: Tensor

    def __len__(self) -> int:
        return self.actions.shape[0]

    def select(self, index: Tensor | slice) -> Transitions:
        return Transitions(*(observations.apply(lambda t: t[index], field) for field in self))

    def split(self, parts: int) -> list[Transitions]:
        """``parts`` consecutive pieces, sized as ``Tensor.tensor_split`` sizes them, as views."""
        size, extra = divmod(len(self), parts)
        bounds = list(itertools.accumulate([0] + [size + (i < extra) for i in range(parts)]))
        return [self.select(slice(start, stop)) for start, stop in zip(bounds, bounds[1:])]


@shared_args_documented
class PPO(ActorCriticBase):
    """PPO: each rollout is reused for ``update_epochs`` passes in shuffled minibatches, with
    Lightning's manual optimisation. Defaults follow CleanRL's discrete-action PPO.

    Args:
        n_steps: steps per env per rollout.
        gae_lambda: GAE λ.
        normalize_advantages: normalise advantages per minibatch (a minibatch of one gives 0).
        update_epochs: passes over each rollout.
        minibatch_size: transitions per gradient step; ``None`` uses the whole rollout.
        clip_range: ε of the clipped surrogate.
        clip_range_vf: clip value updates to ±this around the old values; ``None`` disables it.
        target_kl: stop the passes early once the approximate KL of a pass exceeds this.
        anneal_clip_range: decay ``clip_range`` linearly to 0 over ``max_env_steps`` (``annealed``, the
            schedule of ``anneal_lr``).
    """

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        env_kwargs: dict[str, Any] | None = None,
        wrappers: Wrappers = None,
        num_envs: int = 4,
        vectorization: Vectorization = "auto",
        n_steps: int = 128,
        gae_lambda: float = 0.95,
        normalize_advantages: bool = True,
        update_epochs: int = 4,
        minibatch_size: int | None = 128,
        clip_range: float = 0.2,
        clip_range_vf: float | None = None,
        target_kl: float | None = None,
        anneal_clip_range: bool = False,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        network: str | dict[str, Any] | None = None,
        critic: Literal["separate", "shared"] = "separate",
        lr: float = 2.5e-4,
        anneal_lr: bool = False,
        gamma: float = 0.99,
        entropy_coef: float = 0.0,
        value_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        normalize_observations: bool = False,
        normalize_rewards: bool = False,
        log_std_init: float = 0.0,
        seed: int = 0,
        max_env_steps: int | None = None,
        eval_every: int = 0,
        eval_episodes: int = 10,
        record_video: bool = False,
        max_skipped_updates: int = 10,
        num_seeds: int = 1,
    ):
        super().__init__()
        self.automatic_optimization = False

    def check_hyperparameters(self) -> None:
        super().check_hyperparameters()
        hp = self.hparams
        require(hp.update_epochs >= 1, f"update_epochs must be >= 1, got {hp.update_epochs}")
        require(hp.minibatch_size is None or hp.minibatch_size >= 1, f"minibatch_size must be >= 1 or None, got {hp.minibatch_size}")
        require(hp.clip_range > 0, f"clip_range must be > 0, got {hp.clip_range}")
        require(hp.clip_range_vf is None or hp.clip_range_vf > 0, f"clip_range_vf must be > 0 or None, got {hp.clip_range_vf}")
        require(hp.target_kl is None or hp.target_kl > 0, f"target_kl must be > 0 or None, got {hp.target_kl}")
        require(not hp.anneal_clip_range or hp.max_env_steps is not None,
                "anneal_clip_range needs max_env_steps (the schedule's length)")

    def minibatch_losses(self, data: Transitions, clip_range: float, agent: Agent | None = None) -> dict[str, Tensor]:
        """PPO's loss terms of ``agent`` (default: the first seed) on one minibatch of flat transitions."""
        log_probs, entropy, values = self.agent(agent).policy.evaluate(data.observations, data.actions, normalized=True)
        return self.loss_terms(data, log_probs, entropy, values, clip_range)

    def loss_terms(self, data: Transitions, log_probs: Tensor, entropy: Tensor, values: Tensor,
                   clip_range: float | Tensor, rows: Rows | None = None) -> dict[str, Tensor]:
        """PPO's loss terms from the policy's outputs on a minibatch (per seed, given ``rows``)."""
        hp = self.hparams
        advantages = standardize(data.advantages, rows=rows) if hp.normalize_advantages else data.advantages
        policy_loss, approx_kl, clip_fraction = losses.ppo_clip_loss(
            log_probs, data.old_log_probs, advantages, clip_range, rows
        )
        terms = {
            "policy_loss": policy_loss,
            "value_loss": losses.value_loss(values, data.returns, data.old_values, hp.clip_range_vf, rows),
            "entropy": losses.mean(entropy, rows),
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
        }
        terms["loss"] = self.add_entropy_bonus(policy_loss + hp.value_coef * terms["value_loss"], terms["entropy"])
        return terms

    def rollout_data(self, batch: Batch, agent: Agent | None = None) -> Transitions:
        """The real transitions of ``agent``'s rollout (autoreset steps dropped), flat, with the
        observations normalised (``ActorCritic.normalize``) once for every minibatch."""
        agent = self.agent(agent)
        obs, actions = agent.policy.normalize(flat_batch(batch.observations)), batch.actions.flatten(0, 1)
        with torch.no_grad():
            old_log_probs, _, old_values = agent.policy.evaluate(obs, actions, normalized=True)
        advantages, returns = self.advantages(batch, old_values.view_as(batch.rewards), agent)
        mask = batch.mask.flatten()
        return Transitions(obs, actions, old_log_probs, old_values, advantages.flatten(), returns.flatten()).select(mask)

    def training_step(self, batch: Batch | list[Batch | None], batch_idx: int) -> None:
        """One PPO update of every training seed, then the schedules: stacked seeds together
        (``stacked_update``), other many-seeds runs one seed after another (each its own epochs,
        early stop and gradient steps, which change only its own parameters)."""
        if isinstance(self.optimizers().optimizer, StackedAdam):
            updated = [self.stacked_update(self.seed_batches(batch))]
        else:
            updated = [self.update(seed_batch, agent) for agent, seed_batch in self.seed_batches(batch)]
        self.end_seeds_update()
        if any(updated):
            self.step_lr_schedulers()

    def update(self, batch: Batch, agent: Agent) -> bool:
        """``agent``'s PPO update: advantages, then epochs of minibatches, each a loss and a
        gradient step, then its statistics; whether it took any step."""
        # Every process must take the same number of gradient steps (DDP all-reduces each one),
        # but autoreset steps make the number of real transitions differ: count minibatches on
        # the smallest process's rollout and split each process's own data into that many.
        smallest = self.smallest_batch(batch)
        if smallest == 0:
            self.end_update(batch, {}, agent)
            return False
        hp = self.hparams
        optimizer = self.optimizers()
        # advantages and value targets, with the old policy's log-probs and values
        data = self.rollout_data(batch, agent)
        minibatches = -(-smallest // hp.minibatch_size) if hp.minibatch_size else 1
        clip_range = self.annealed(hp.clip_range, agent) if hp.anneal_clip_range else hp.clip_range
        history: list[dict[str, Tensor]] = []
        for _ in range(hp.update_epochs):
            # a full-batch epoch needs no shuffle: its gradient does not depend on the order
            parts = [data]
            if minibatches > 1:
                order = torch.randperm(len(data), generator=agent.shuffle).to(self.device)
                parts = data.select(order).split(minibatches)  # one gather per field, then views
            for part in parts:
                terms = self.minibatch_losses(part, clip_range, agent)
                self.gradient_step(optimizer, terms["loss"])  # guard, clip to max_grad_norm, step
                history.append(terms)
            kl = history[-1]["approx_kl"]
            if hp.target_kl is not None and distributed.reduce(self.trainer, [float(kl)], "mean")[0] > hp.target_kl:
                break  # early stop on the approximate KL of this pass, pooled over processes
        # statistics: the passes' mean terms, then the run's counters and metrics
        metrics = {k: torch.stack([h[k].detach() for h in history]).mean() for k in history[0]}
        metrics["explained_variance"] = losses.explained_variance(data.old_values, data.returns)
        metrics["updates"] = torch.tensor(float(len(history)))
        self.end_update(batch, metrics, agent)
        return True

    def stacked_update(self, pairs: list[tuple[Agent, Batch]]) -> bool:
        """``update`` of the seeds in ``pairs`` in lockstep: gradient step j of an epoch is every
        seed's own minibatch j (its own shuffle, its own count of minibatches), padded to the
        longest and masked; a seed out of minibatches, stopped by its KL or with a non-finite
        gradient does not step. Whether any seed took a step."""
        optimizer = self.optimizers()  # Lightning's wrapper: its step runs the guard and clip
        seeds: StackedAdam = optimizer.optimizer
        self.set_seed_rates(seeds)
        pairs = self.seeds_with_transitions(pairs)
        if not pairs:
            return False
        hp = self.hparams
        rows, batch = self.stacked_batch(pairs)
        data, mask = self.stacked_rollout_data(rows, batch)
        counts = mask.sum(1).tolist()
        parts = [-(-n // hp.minibatch_size) if hp.minibatch_size else 1 for n in counts]
        clip = torch.tensor([[self.annealed(hp.clip_range, agent) if hp.anneal_clip_range else hp.clip_range]
                             for agent, _ in pairs], dtype=data.advantages.dtype, device=self.device)
        history: list[tuple[Tensor, dict[str, Tensor]]] = []  # each step's seeds (positions in pairs) and terms
        training = torch.ones(len(pairs), dtype=torch.bool, device=self.device)
        for _ in range(hp.update_epochs):
            epoch = len(history)
            for index, positions, valid in self.epoch_steps(mask, training.nonzero().flatten(), parts, pairs):
                minibatch = data.select((index.unsqueeze(1), positions)) if positions is not None else (
                    data if len(index) == len(pairs) else data.select(index))
                log_probs, entropy, values = self.stack.evaluate(minibatch.observations, minibatch.actions, rows[index])
                terms = self.loss_terms(minibatch, log_probs, entropy, values, clip[index], Rows(valid))
                seeds.stepping.zero_()
                seeds.stepping[rows[index]] = True
                self.gradient_step(optimizer, terms["loss"].sum())  # guard, clip each seed to max_grad_norm, step
                history.append((index, {name: value.detach() for name, value in terms.items()}))
            if hp.target_kl is not None:  # each seed's approximate KL on its last minibatch of this pass
                kl = torch.zeros(len(pairs), device=self.device)
                for index, terms in history[epoch:]:
                    kl[index] = terms["approx_kl"]
                training &= kl <= hp.target_kl
            if not training.any():
                break  # every seed stopped early on its KL
        index = torch.cat([index for index, _ in history])
        steps = torch.bincount(index, minlength=len(pairs)).to(data.advantages.dtype)
        metrics = {name: torch.zeros_like(steps).index_add_(0, index, torch.cat([t[name] for _, t in history])) / steps
                   for name in history[0][1]}
        metrics["explained_variance"] = losses.explained_variance(data.old_values, data.returns, Rows(mask))
        metrics["updates"] = steps
        metrics = {name: value.cpu() for name, value in metrics.items()}
        for i, (agent, seed_batch) in enumerate(pairs):
            self.end_update(seed_batch, {name: value[i] for name, value in metrics.items()}, agent)
        return True

    def epoch_steps(self, mask: Tensor, seeds: Tensor, parts: list[int],
                    pairs: list[tuple[Agent, Batch]]) -> list[tuple[Tensor, Tensor | None, Tensor]]:
        """One pass's gradient steps for the ``seeds`` still training (positions in ``pairs``): each
        step's seeds, their minibatches' positions in the rollout rows (``None``: every row) and
        the mask of real entries (``lockstep.minibatch_plan``)."""
        if self.hparams.minibatch_size is None:
            return [(seeds, None, mask[seeds])]
        positions, valid = minibatch_plan(mask[seeds], [parts[i] for i in seeds.tolist()],
                                          [pairs[i][0].shuffle for i in seeds.tolist()])
        steps = []
        for j in range(positions.shape[1]):
            taking = valid[:, j, 0]  # minibatches are left-aligned: a seed takes step j if its first entry is real
            steps.append((seeds[taking], positions[taking, j], valid[taking, j]))
        return steps

    def stacked_rollout_data(self, rows: Tensor, batch: Batch) -> tuple[Transitions, Tensor]:
        """``rollout_data`` of the stacked seeds: every step of each seed's rollout, ``[K', T·N]``,
        and the mask of its real transitions."""
        obs, actions = self.stacked_inputs(rows, batch)
        with torch.no_grad():
            old_log_probs, _, old_values = self.stack.evaluate(obs, actions, rows)
        advantages, returns = self.stacked_advantages(rows, batch, old_values)
        return Transitions(obs, actions, old_log_probs, old_values, advantages, returns), seed_major(batch.mask)

    def step_lr_schedulers(self) -> None:
        """Manual optimisation steps its schedulers itself: once per update, after the counters."""
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, ReduceLROnPlateau):
                config.scheduler.step(self.trainer.callback_metrics[config.monitor])
            else:
                config.scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # with many seeds, each seed's stream is in its own entry
        checkpoint["pg_lightning"]["shuffle_rng"] = self.agents[0].shuffle.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.num_seeds == 1:
            self.agents[0].shuffle.set_state(checkpoint["pg_lightning"]["shuffle_rng"])
