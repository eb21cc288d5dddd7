"""What A2C and PPO share: ``n_steps × num_envs`` rollouts and GAE(λ) advantages."""

from __future__ import annotations

import torch
from torch import Tensor

from pg_lightning.agent import Agent
from pg_lightning.batch import Batch
from pg_lightning.data import RolloutDataset
from pg_lightning.errors import require
from pg_lightning.modules.base import PolicyGradient
from pg_lightning.observations import flat_batch, seed_major, time_major
from pg_lightning.returns import gae


class ActorCriticBase(PolicyGradient):
    """Base of the actor-critic algorithms: rollouts of ``n_steps`` per env and GAE advantages."""

    def check_hyperparameters(self) -> None:
        super().check_hyperparameters()
        hp = self.hparams
        require(hp.n_steps >= 1, f"n_steps must be >= 1, got {hp.n_steps}")
        require(0.0 <= hp.gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {hp.gae_lambda}")
        require(hp.critic != "none", f"actor-critic methods need critic='separate' or 'shared', got {hp.critic!r}")

    def make_dataset(self, agent: Agent) -> RolloutDataset:
        return RolloutDataset(agent.collector, agent.policy, self.hparams.n_steps)

    def advantages(self, batch: Batch, values: Tensor, agent: Agent | None = None) -> tuple[Tensor, Tensor]:
        """GAE advantages and value targets ``[T, N]``; bootstraps truncated episodes and the tail."""
        with torch.no_grad():
            next_values = self.agent(agent).policy.value(flat_batch(batch.next_observations))
        next_values = next_values.view_as(batch.rewards)
        advantages = gae(
            self.agent(agent).normalizer.scale_rewards(batch.rewards), values.detach(), next_values, batch.terminated,
            batch.truncated, self.hparams.gamma, self.hparams.gae_lambda,
        )  # the recursion ends at the rollout's tail, where δ bootstraps from V(s_T)
        return advantages, advantages + values.detach()

    def stacked_advantages(self, rows: Tensor, batch: Batch, values: Tensor) -> tuple[Tensor, Tensor]:
        """``advantages`` of the stacked seeds ``rows`` (``stacked_batch``, rewards already scaled),
        from their values ``[K', T·N]``: GAE over ``[T, K', N]`` (the columns are independent), ``[K', T·N]``."""
        with torch.no_grad():
            next_values = self.stack.value(self.stack.normalize(seed_major(batch.next_observations), rows), rows)
        steps, values = batch.rewards.shape[0], values.detach()
        advantages = seed_major(gae(
            batch.rewards, time_major(values, steps), time_major(next_values, steps), batch.terminated,
            batch.truncated, self.hparams.gamma, self.hparams.gae_lambda,
        ))
        return advantages, advantages + values
