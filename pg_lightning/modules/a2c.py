"""Advantage actor-critic (A2C): one gradient step per rollout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor

from pg_lightning import losses
from pg_lightning.agent import Agent
from pg_lightning.batch import Batch
from pg_lightning.envs import Vectorization, Wrappers
from pg_lightning.losses import Rows
from pg_lightning.modules.actor_critic import ActorCriticBase
from pg_lightning.modules.arguments import shared_args_documented
from pg_lightning.observations import flat_batch, seed_major
from pg_lightning.returns import standardize


@shared_args_documented
class A2C(ActorCriticBase):
    """Advantage actor-critic (synchronous A3C): one gradient step per rollout.

    Args:
        n_steps: steps per env per rollout.
        gae_lambda: GAE λ; 1.0 gives n-step returns.
        normalize_advantages: normalise advantages over the rollout.
    """

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        env_kwargs: dict[str, Any] | None = None,
        wrappers: Wrappers = None,
        num_envs: int = 8,
        vectorization: Vectorization = "auto",
        n_steps: int = 5,
        gae_lambda: float = 1.0,
        normalize_advantages: bool = False,
        hidden_sizes: Sequence[int] = (128,),
        activation: str = "relu",
        network: str | dict[str, Any] | None = None,
        critic: Literal["separate", "shared"] = "separate",
        lr: float = 7e-4,
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

    def compute_losses(self, batch: Batch, agent: Agent | None = None) -> dict[str, Tensor]:
        agent = self.agent(agent)
        log_probs, entropy, values = agent.policy.evaluate(
            flat_batch(batch.observations), batch.actions.flatten(0, 1)
        )
        advantages, returns = self.advantages(batch, values.view_as(batch.rewards), agent)
        mask = batch.mask.flatten()
        return self.loss_terms(log_probs[mask], entropy[mask], values[mask], advantages.flatten()[mask], returns.flatten()[mask])

    def stacked_losses(self, rows: Tensor, batch: Batch) -> dict[str, Tensor]:
        log_probs, entropy, values = self.stack.evaluate(*self.stacked_inputs(rows, batch), rows)
        advantages, returns = self.stacked_advantages(rows, batch, values)
        return self.loss_terms(log_probs, entropy, values, advantages, returns, Rows(seed_major(batch.mask)))

    def loss_terms(self, log_probs: Tensor, entropy: Tensor, values: Tensor, advantages: Tensor, returns: Tensor,
                   rows: Rows | None = None) -> dict[str, Tensor]:
        """The loss terms from the policy's outputs on a rollout's real transitions and their
        advantages and returns (per seed, given ``rows``)."""
        hp = self.hparams
        if hp.normalize_advantages:
            advantages = standardize(advantages, rows=rows)
        terms = {
            "policy_loss": -losses.mean(log_probs * advantages, rows),
            "value_loss": losses.value_loss(values, returns, rows=rows),
            "entropy": losses.mean(entropy, rows),
            "explained_variance": losses.explained_variance(values.detach(), returns, rows),
        }
        terms["loss"] = (
            self.add_entropy_bonus(terms["policy_loss"] + hp.value_coef * terms["value_loss"], terms["entropy"])
        )  # Lightning steps on it (automatic optimisation); the guard and clip: on_before_optimizer_step
        return terms
