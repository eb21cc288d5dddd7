"""REINFORCE (Williams 1992) on batches of whole episodes: the seed recipe and its baselines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor

from pg_lightning import losses
from pg_lightning.agent import Agent
from pg_lightning.batch import Batch
from pg_lightning.data import EpisodeDataset
from pg_lightning.envs import Vectorization, Wrappers
from pg_lightning.errors import require
from pg_lightning.losses import Rows
from pg_lightning.modules.arguments import shared_args_documented
from pg_lightning.modules.base import PolicyGradient
from pg_lightning.observations import flat_batch, seed_major
from pg_lightning.returns import discounted_returns, standardize


@shared_args_documented
class Reinforce(PolicyGradient):
    """REINFORCE on batches of whole episodes.

    Defaults are the seed recipe: CartPole-v1, 4-128-2 ReLU MLP, Adam 1e-2, γ 0.99, one episode
    per update, returns normalised over the batch, loss ``Σ_t -log π(a_t|s_t) G_t``. Returns are
    Monte-Carlo: an episode cut by a time limit ends there.

    Args:
        episodes_per_batch: whole episodes per update (at least ``num_envs``: every env plays one
            or more episodes of each batch).
        normalize_returns: ``(w - mean) / (std + 1e-9)`` on the policy weights (returns or advantages).
        reduction: ``sum`` (the seed) or ``mean`` over the batch's steps.
        baseline: ``none``; ``mean`` (subtract the batch mean return); ``value`` (a learned V(s),
            trained by MSE on the returns; the policy uses ``G - V(s)``).
        critic: with ``baseline="value"``, ``none`` means ``separate``.
    """

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        env_kwargs: dict[str, Any] | None = None,
        wrappers: Wrappers = None,
        num_envs: int = 1,
        vectorization: Vectorization = "auto",
        episodes_per_batch: int = 1,
        normalize_returns: bool = True,
        reduction: Literal["sum", "mean"] = "sum",
        baseline: Literal["none", "mean", "value"] = "none",
        hidden_sizes: Sequence[int] = (128,),
        activation: str = "relu",
        network: str | dict[str, Any] | None = None,
        critic: Literal["none", "separate", "shared"] = "none",
        lr: float = 1e-2,
        anneal_lr: bool = False,
        gamma: float = 0.99,
        entropy_coef: float = 0.0,
        value_coef: float = 0.5,
        max_grad_norm: float | None = None,
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

    # a batch is one short episode: the worker's round trip per batch costs more than it saves
    # (cartpole_reinforce, 16 seeds: 451 s with a collection worker against 189 s without)
    shares_collection = False

    def check_hyperparameters(self) -> None:
        super().check_hyperparameters()
        hp = self.hparams
        require(hp.episodes_per_batch >= 1, f"episodes_per_batch must be >= 1, got {hp.episodes_per_batch}")
        require(hp.num_envs <= hp.episodes_per_batch,
                f"num_envs={hp.num_envs} > episodes_per_batch={hp.episodes_per_batch} would leave envs idle: "
                "every env plays whole episodes of the batch, so raise episodes_per_batch")
        require(hp.reduction in ("sum", "mean"), f"reduction must be 'sum' or 'mean', got {hp.reduction!r}")
        require(hp.baseline in ("none", "mean", "value"), f"baseline must be none, mean or value, got {hp.baseline!r}")
        require(hp.baseline == "value" or hp.critic == "none", "a critic is only used with baseline='value'")

    @property
    def critic(self) -> str:
        if self.hparams.baseline == "value" and self.hparams.critic == "none":
            return "separate"
        return self.hparams.critic

    @property
    def batch_columns(self) -> int:
        return 1  # episodes laid end to end

    def make_dataset(self, agent: Agent) -> EpisodeDataset:
        return EpisodeDataset(agent.collector, agent.policy, self.hparams.episodes_per_batch)

    def compute_losses(self, batch: Batch, agent: Agent | None = None) -> dict[str, Tensor]:
        """Loss terms for one batch of whole episodes; ``loss`` is their weighted sum."""
        hp, agent = self.hparams, self.agent(agent)
        returns = discounted_returns(
            agent.normalizer.scale_rewards(batch.rewards), batch.terminated, batch.truncated, hp.gamma
        ).flatten()
        log_probs, entropy, values = agent.policy.evaluate(
            flat_batch(batch.observations), batch.actions.flatten(0, 1)
        )
        return self.loss_terms(log_probs, entropy, values, returns)

    def stacked_losses(self, rows: Tensor, batch: Batch) -> dict[str, Tensor]:
        returns = discounted_returns(batch.rewards, batch.terminated, batch.truncated, self.hparams.gamma)
        log_probs, entropy, values = self.stack.evaluate(*self.stacked_inputs(rows, batch), rows)
        return self.loss_terms(log_probs, entropy, values, seed_major(returns), Rows(seed_major(batch.mask)))

    def loss_terms(self, log_probs: Tensor, entropy: Tensor, values: Tensor | None, returns: Tensor,
                   rows: Rows | None = None) -> dict[str, Tensor]:
        """The loss terms from the policy's outputs on a batch and its returns (per seed, given ``rows``)."""
        hp = self.hparams
        weights = returns
        if hp.baseline == "mean":
            weights = returns - losses.mean(returns, rows, keepdim=True)
        elif hp.baseline == "value":
            weights = returns - values.detach()
        if hp.normalize_returns:
            weights = standardize(weights, eps=1e-9, rows=rows)
        terms = {
            "policy_loss": losses.reinforce_loss(log_probs, weights, hp.reduction, rows),
            "entropy": losses.mean(entropy, rows),
        }
        loss = self.add_entropy_bonus(terms["policy_loss"], losses.total(entropy, hp.reduction, rows))
        if values is not None:
            terms["value_loss"] = losses.value_loss(values, returns, rows=rows)
            loss = loss + hp.value_coef * terms["value_loss"]
        terms["loss"] = loss  # Lightning steps on it (automatic optimisation); the guard and clip: on_before_optimizer_step
        return terms
