"""Advantage actor-critic (A2C), and the rollout handling it shares with PPO."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from pg_lightning import losses
from pg_lightning.data import Batch, Collector, RolloutDataset
from pg_lightning.envs import Vectorization, Wrappers
from pg_lightning.errors import require
from pg_lightning.observations import flat_batch
from pg_lightning.modules.arguments import shared_args_documented
from pg_lightning.modules.base import PolicyGradient
from pg_lightning.returns import gae, normalize


class ActorCriticBase(PolicyGradient):
    """What A2C and PPO share: ``n_steps × num_envs`` rollouts and GAE(λ) advantages."""

    def check_hyperparameters(self) -> None:
        super().check_hyperparameters()
        hp = self.hparams
        require(hp.n_steps >= 1, f"n_steps must be >= 1, got {hp.n_steps}")
        require(0.0 <= hp.gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {hp.gae_lambda}")
        require(hp.critic != "none", f"actor-critic methods need critic='separate' or 'shared', got {hp.critic!r}")

    def make_dataset(self, collector: Collector) -> RolloutDataset:
        return RolloutDataset(collector, self.policy, self.hparams.n_steps)

    def advantages(self, batch: Batch, values: Tensor) -> tuple[Tensor, Tensor]:
        """GAE advantages and value targets ``[T, N]``; bootstraps truncated episodes and the tail."""
        with torch.no_grad():
            next_values = self.policy.value(flat_batch(batch.next_observations))
        next_values = next_values.view_as(batch.rewards)
        advantages = gae(
            self.scaled_rewards(batch), values.detach(), next_values, batch.terminated,
            batch.truncated, self.hparams.gamma, self.hparams.gae_lambda,
        )  # the recursion ends at the rollout's tail, where δ bootstraps from V(s_T)
        return advantages, advantages + values.detach()


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
    ):
        super().__init__()

    def compute_losses(self, batch: Batch) -> dict[str, Tensor]:
        hp = self.hparams
        log_probs, entropy, values = self.policy.evaluate(
            flat_batch(batch.observations), batch.actions.flatten(0, 1)
        )
        values = values.view_as(batch.rewards)
        advantages, returns = self.advantages(batch, values)
        mask = batch.mask.flatten()
        adv = advantages.flatten()[mask]
        if hp.normalize_advantages:
            adv = normalize(adv)
        terms = {
            "policy_loss": -(log_probs[mask] * adv).mean(),
            "value_loss": losses.value_loss(values.flatten()[mask], returns.flatten()[mask]),
            "entropy": entropy[mask].mean(),
            "explained_variance": losses.explained_variance(
                values.detach().flatten()[mask], returns.flatten()[mask]
            ),
        }
        terms["loss"] = (
            self.add_entropy_bonus(terms["policy_loss"] + hp.value_coef * terms["value_loss"], terms["entropy"])
        )
        return terms
