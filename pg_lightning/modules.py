"""The LightningModules: a shared base that owns env → collector → batch → update, and the
algorithms (``Reinforce``, ``A2C``, ``PPO``) that define only their losses."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric

from pg_lightning import losses
from pg_lightning.data import Batch, Collector, EpisodeDataset, RolloutDataset
from pg_lightning.errors import ConfigError, TrainingError, require
from pg_lightning.evaluation import EVAL_SEED_OFFSET, EvaluationDataset, evaluate
from pg_lightning.envs import Vectorization, env_spec, probe_spaces
from pg_lightning.policies import ActorCritic, RunningMeanStd
from pg_lightning.returns import discounted_returns, gae, normalize, running_returns


# val_dataloader() returns [] to switch evaluation off during fit; that is intended.
warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")


def _gather_objects(obj: Any) -> list[Any]:
    """``obj`` from every process, in rank order (``[obj]`` without torch.distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def _all_reduce(value: Tensor, op: str) -> Tensor:
    """``value`` reduced over all processes with ``op`` ("sum", "min", "max", "mean")."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    value = value.clone()
    if op == "mean":
        torch.distributed.all_reduce(value, torch.distributed.ReduceOp.SUM)
        return value / torch.distributed.get_world_size()
    torch.distributed.all_reduce(value, getattr(torch.distributed.ReduceOp, op.upper()))
    return value


def check_checkpoint_matches(state: dict[str, Any], algorithm: str, env_id: str) -> None:
    """A ConfigError unless the checkpoint's ``pg_lightning`` entry is for ``algorithm`` on ``env_id``."""
    if (state["algorithm"], state["env_id"]) != (algorithm, env_id):
        raise ConfigError(
            f"checkpoint is for {state['algorithm']} on {state['env_id']}, this module is {algorithm} on {env_id}"
        )


class PolicyGradient(L.LightningModule):
    """Base for the policy-gradient family; not used directly.

    One training epoch is one batch is one policy update. Training runs until ``max_env_steps``
    environment steps (summed over processes) or the Trainer's own limits; give the Trainer
    ``max_epochs=-1`` to let the env-step budget decide.

    Args:
        env_id: a registered gymnasium id, e.g. ``"CartPole-v1"``.
        env_kwargs: keyword arguments for ``gymnasium.make`` / ``make_vec``.
        num_envs: parallel envs per process.
        vectorization: ``auto`` (the env's own vectorised version if any, else sync), ``sync`` or ``async``.
        hidden_sizes: widths of the hidden layers.
        activation: one of ``relu``, ``tanh``, ``elu``, ``silu`` (ReLU is ~25x cheaper than tanh on a CPU).
        critic: ``none``, ``separate`` (own MLP) or ``shared`` (value output on the actor's trunk).
        lr: Adam learning rate.
        gamma: discount factor in [0, 1].
        entropy_coef: weight of the entropy bonus.
        value_coef: weight of the value loss.
        max_grad_norm: clip the global gradient norm to this; ``None`` disables clipping.
        normalize_observations: running mean/std normalisation of observations (saved, exported).
        normalize_rewards: scale rewards by the running std of the discounted return.
        anneal_lr: decay the learning rate linearly to 0 over ``max_env_steps``.
        log_std_init: initial log standard deviation of Gaussian (Box) policies.
        seed: seeds the network, every env (``seed + rank * num_envs + i``) and action sampling.
        max_env_steps: env-step budget over all processes; ``None`` for no budget.
        eval_every: evaluate every this many updates during ``fit`` (0: only in ``validate`` /
            ``test``); sets the Trainer's ``check_val_every_n_epoch``.
        eval_episodes: deterministic-policy episodes per evaluation, in a separately seeded env.
        record_video: record the first evaluation episode as an mp4 (and log it to W&B).
        max_skipped_updates: updates with a non-finite loss or gradient are skipped (no parameter
            changes) with a warning (``train/skipped_updates``); this many in a row stop training with an error.
    """

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        env_kwargs: dict[str, Any] | None = None,
        num_envs: int = 1,
        vectorization: Vectorization = "auto",
        hidden_sizes: Sequence[int] = (128,),
        activation: str = "relu",
        critic: Literal["none", "separate", "shared"] = "none",
        lr: float = 1e-2,
        gamma: float = 0.99,
        entropy_coef: float = 0.0,
        value_coef: float = 0.5,
        max_grad_norm: float | None = None,
        normalize_observations: bool = False,
        normalize_rewards: bool = False,
        anneal_lr: bool = False,
        log_std_init: float = 0.0,
        seed: int = 0,
        max_env_steps: int | None = None,
        eval_every: int = 0,
        eval_episodes: int = 10,
        record_video: bool = False,
        max_skipped_updates: int = 10,
    ):
        super().__init__()
        self.save_hyperparameters()
        require(isinstance(env_id, str) and bool(env_id), f"env_id must be a gymnasium id, got {env_id!r}")
        require(num_envs >= 1, f"num_envs must be >= 1, got {num_envs}")
        require(
            len(hidden_sizes) > 0 and all(int(h) > 0 for h in hidden_sizes),
            f"hidden_sizes must be positive integers, got {list(hidden_sizes)}",
        )
        require(lr > 0, f"lr must be > 0, got {lr}")
        require(0.0 <= gamma <= 1.0, f"gamma must be in [0, 1], got {gamma}")
        require(entropy_coef >= 0, f"entropy_coef must be >= 0, got {entropy_coef}")
        require(value_coef >= 0, f"value_coef must be >= 0, got {value_coef}")
        require(max_grad_norm is None or max_grad_norm > 0, f"max_grad_norm must be > 0 or None, got {max_grad_norm}")
        require(max_env_steps is None or max_env_steps > 0, f"max_env_steps must be > 0 or None, got {max_env_steps}")
        require(not anneal_lr or max_env_steps is not None, "anneal_lr needs max_env_steps (the schedule's length)")
        require(max_skipped_updates >= 1, f"max_skipped_updates must be >= 1, got {max_skipped_updates}")
        require(eval_every >= 0, f"eval_every must be >= 0, got {eval_every}")
        require(eval_episodes >= 1, f"eval_episodes must be >= 1, got {eval_episodes}")
        require(vectorization in ("auto", "vector_entry_point", "sync", "async"),
                 f"vectorization must be auto, vector_entry_point, sync or async, got {vectorization!r}")
        self.env_spec = env_spec(env_id)
        self.observation_space, self.action_space = probe_spaces(env_id, env_kwargs or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = ActorCritic(
                self.observation_space, self.action_space, [int(h) for h in hidden_sizes],
                activation, critic, normalize_observations, log_std_init,
            )
        self.reward_scaler = RunningMeanStd() if normalize_rewards else None
        # the running discounted return per batch column, carried between batches; this process's
        # own (not a buffer: DDP would overwrite it with rank 0's)
        self.reward_running_return = torch.zeros(self.batch_columns)
        self.episode_return = MeanMetric()
        self.episode_length = MeanMetric()
        self.env_steps = 0  # summed over processes
        self.episodes = 0
        self.return_last100: float | None = None  # mean of the last 100 episodes, pooled
        self.skipped_updates = 0
        self._skipped_in_a_row = 0
        self.collector: Collector | None = None
        self._collector_state: dict[str, Any] | None = None
        self._clock = (0.0, 0)

    # ---- data -------------------------------------------------------------------------------
    @property
    def batch_columns(self) -> int:
        """N of the ``[T, N]`` batches: one per env for rollouts."""
        return self.hparams.num_envs

    def make_collector(self) -> Collector:
        """This process's collector: env seeds ``seed + rank * num_envs + i``."""
        hp = self.hparams
        rank = self.global_rank  # 0 outside a Trainer
        collector = Collector(
            hp.env_id, hp.num_envs, hp.env_kwargs, hp.vectorization,
            seed=hp.seed + rank * hp.num_envs,
        )
        if self._collector_state is not None:
            collector.load_state_dict(self._collector_state)
            self._collector_state = None
        return collector

    def make_dataset(self, collector: Collector) -> EpisodeDataset | RolloutDataset:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        if self.collector is None:
            self.collector = self.make_collector()
        return DataLoader(self.make_dataset(self.collector), batch_size=None)

    def teardown(self, stage: str) -> None:
        if self.collector is not None and stage == "fit":
            self._collector_state = self.collector.state_dict()  # a later save or fit continues it
            self.collector.close()
            self.collector = None

    # ---- evaluation -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.eval_every:
            self.trainer.check_val_every_n_epoch = self.hparams.eval_every

    def val_dataloader(self) -> DataLoader | list:
        if self.trainer.state.fn == "fit" and not self.hparams.eval_every:
            return []  # no evaluation during fit: Lightning skips the loop entirely
        return DataLoader(EvaluationDataset(self._play_evaluation), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(EvaluationDataset(self._play_evaluation), batch_size=None)

    def _play_evaluation(self) -> dict[str, Any]:
        hp = self.hparams
        rank = self.global_rank  # 0 outside a Trainer
        video = self._video_folder() if hp.record_video and rank == 0 else None
        return evaluate(
            self.policy, hp.env_id, hp.eval_episodes, hp.seed + EVAL_SEED_OFFSET + rank * hp.eval_episodes,
            hp.env_kwargs, video, video_prefix=f"update{self.current_epoch}",
        )

    def _video_folder(self) -> Path:
        return Path(self.trainer.log_dir or self.trainer.default_root_dir) / "videos"

    def _log_evaluation(self, results: dict[str, Tensor], prefix: str) -> None:
        returns = results["returns"]
        self.log_dict(
            {
                f"{prefix}/episode_return_std": returns.std(correction=0),
                f"{prefix}/episode_length": results["lengths"].mean(),
                f"{prefix}/env_steps": float(self.env_steps),
            },
            sync_dist=True, batch_size=len(returns),
        )
        self.log(f"{prefix}/episode_return", returns.mean(), prog_bar=True, sync_dist=True, batch_size=len(returns))
        if self.hparams.record_video and self.global_rank == 0:
            videos = sorted(self._video_folder().glob(f"update{self.current_epoch}-*.mp4"))
            for logger in self.loggers:
                if videos and hasattr(logger, "log_video"):
                    logger.log_video(f"{prefix}/video", [str(videos[-1])])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_evaluation(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_evaluation(batch, "test")

    # ---- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # the fused kernel is ~3x faster than the per-tensor loop on small networks
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, fused=self.device.type in ("cpu", "cuda"))

    @property
    def progress(self) -> float:
        """Fraction of the env-step budget used (0 without a budget)."""
        budget = self.hparams.max_env_steps
        return min(self.env_steps / budget, 1.0) if budget else 0.0

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        if self.hparams.anneal_lr:
            for optimizer in self.trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = self.hparams.lr * (1.0 - self.progress)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the gradient norm, or drop the step if the gradients are not finite (which a
        non-finite loss also makes them).

        Runs in automatic and manual optimisation, after AMP unscaling; torch's clip directly
        is ~4x cheaper per call than Lightning's ``clip_gradients`` on small networks.
        """
        params = [p for p in self.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if not self.is_finite(norm, "loss or gradient"):
            optimizer.zero_grad(set_to_none=True)  # parameters without a gradient are not updated
            return
        self._skipped_in_a_row = 0
        if self.hparams.max_grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, self.hparams.max_grad_norm, norm)

    def is_finite(self, value: Tensor, what: str) -> bool:
        """Whether ``value`` is finite on every process; if not, count a skipped update (and give
        up after ``max_skipped_updates`` in a row). Every process decides the same way."""
        finite = bool(_all_reduce(torch.isfinite(value).all().to(torch.float32), "min"))
        if finite:
            return True
        self.skipped_updates += 1
        self._skipped_in_a_row += 1
        if self._skipped_in_a_row >= self.hparams.max_skipped_updates:
            raise TrainingError(
                f"{self._skipped_in_a_row} updates in a row had a non-finite {what} "
                f"(last at env step {self.env_steps}); lower lr or check the env's rewards"
            )
        rank_zero_warn(f"non-finite {what} at env step {self.env_steps}: update skipped")
        return False

    def scaled_rewards(self, batch: Batch) -> Tensor:
        """Rewards divided by the running std of discounted returns, if ``normalize_rewards``."""
        if self.reward_scaler is None:
            return batch.rewards
        return self.reward_scaler.scale(batch.rewards)

    def _update_statistics(self, batch: Batch) -> None:
        """Fold this batch into the normalisation statistics (after the update that used them)."""
        mask = batch.mask
        if self.policy.obs_rms is not None:
            self._merge_moments(self.policy.obs_rms, batch.observations[mask].flatten(1))
        if self.reward_scaler is not None:
            sums = running_returns(
                batch.rewards.cpu(), batch.terminated.cpu(), batch.truncated.cpu(),
                self.hparams.gamma, self.reward_running_return.cpu(),
            )
            done = (batch.terminated | batch.truncated)[-1].to(sums.dtype).cpu()
            self.reward_running_return = sums[-1] * (1 - done)
            self._merge_moments(self.reward_scaler, sums.to(self.device)[mask].unsqueeze(-1))

    def _merge_moments(self, rms, x: Tensor) -> None:
        """Update ``rms`` with ``x`` ([n, d]) pooled over all processes so every rank agrees."""
        x = x.double()
        moments = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), x.pow(2).sum(0)])
        moments = _all_reduce(moments, "sum")
        count, d = moments[0], x.shape[1]
        if count < 1:
            return
        mean = moments[1 : 1 + d] / count
        var = (moments[1 + d :] / count - mean.pow(2)).clamp_min(0)
        shape = rms.mean.shape
        rms.update(mean.view(shape).float(), var.view(shape).float(), float(count))

    # ---- metrics ----------------------------------------------------------------------------
    def on_train_start(self) -> None:
        self._clock = (time.perf_counter(), self.env_steps)  # start of the steps/s interval

    def log_metrics(self, batch: Batch, metrics: dict[str, Tensor]) -> None:
        """Count the batch's steps and episodes (over all processes) and log ``train/*``.

        Counters and ``return_last100`` (read by StopWhenSolved and the progress bar) are updated
        every update; ``self.log`` runs only when the Trainer writes logs (``log_every_n_steps``),
        as Lightning's logging costs ~0.4 ms per key and epoch, about a CartPole update. Episode
        return and length are the means over the episodes finished since the previous write,
        and steps/s covers the same interval.
        """
        window = self.collector.recent_returns if self.collector is not None else ()
        counts = torch.tensor([batch.num_steps, len(batch.episode_returns), sum(window), len(window)],
                              dtype=torch.float64, device=self.device)
        # pooled over processes; every process takes part, even with no finished episode yet
        steps, episodes, window_sum, window_size = _all_reduce(counts, "sum").tolist()
        self.env_steps += int(steps)
        self.episodes += int(episodes)
        self.return_last100 = window_sum / window_size if window_size else None
        budget = self.hparams.max_env_steps
        if budget is not None and self.env_steps >= budget:
            self.trainer.should_stop = True
        self.episode_return.update(batch.episode_returns)
        self.episode_length.update(batch.episode_lengths)
        if not self.trainer._logger_connector.should_update_logs:
            return
        now = time.perf_counter()
        logged = {f"train/{k}": v.detach() for k, v in metrics.items()}
        logged["train/env_steps"] = float(self.env_steps)
        logged["train/episodes"] = float(self.episodes)
        logged["train/steps_per_second"] = (self.env_steps - self._clock[1]) / max(now - self._clock[0], 1e-9)
        logged["train/learning_rate"] = self.trainer.optimizers[0].param_groups[0]["lr"]
        logged["train/skipped_updates"] = float(self.skipped_updates)
        self._clock = (now, self.env_steps)
        if self.return_last100 is not None:
            logged["train/return_last100"] = self.return_last100
        episode_return = self.episode_return.compute()  # over all processes' episodes
        episode_length = self.episode_length.compute()
        self.episode_return.reset()
        self.episode_length.reset()
        if torch.isfinite(episode_return):  # some episode ended since the last write
            logged["train/episode_return"] = episode_return
            logged["train/episode_length"] = episode_length
        shown = {k: logged.pop(k) for k in ("train/episode_return", "train/return_last100") if k in logged}
        self.log_dict(logged, on_step=True, on_epoch=False, batch_size=1)
        self.log_dict(shown, on_step=True, on_epoch=False, batch_size=1, prog_bar=True)

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        self._update_statistics(batch)

    # ---- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what the weights do not hold: counters and every process's collector state."""
        local = {
            "collector": self.collector.state_dict() if self.collector is not None else self._collector_state,
            "reward_running_return": self.reward_running_return.tolist(),
        }
        checkpoint["pg_lightning"] = {
            "algorithm": type(self).__name__,
            "env_id": self.hparams.env_id,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "skipped_updates": self.skipped_updates,
            "processes": _gather_objects(local),  # every rank calls this hook when saving
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("pg_lightning")
        if state is None:
            raise ConfigError("not a pg_lightning checkpoint (no 'pg_lightning' entry)")
        check_checkpoint_matches(state, type(self).__name__, self.hparams.env_id)
        self.env_steps, self.episodes = state["env_steps"], state["episodes"]
        self.skipped_updates = state["skipped_updates"]
        processes = state["processes"]
        rank = self.global_rank  # 0 outside a Trainer
        if rank >= len(processes):  # more processes than when saved: fresh envs for the new ranks
            rank_zero_warn(f"checkpoint holds {len(processes)} processes' collectors; ranks "
                           f">= {len(processes)} start fresh envs (seeded by their rank)")
            return
        local = processes[rank]
        self.reward_running_return = torch.tensor(local["reward_running_return"])
        self._collector_state = local["collector"]
        if self.collector is not None and self._collector_state is not None:
            self.collector.load_state_dict(self._collector_state)
            self._collector_state = None

    # ---- the update -------------------------------------------------------------------------
    def compute_losses(self, batch: Batch) -> dict[str, Tensor]:
        """Named loss terms and diagnostics for ``batch``; ``loss`` is the one to minimise."""
        raise NotImplementedError

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        terms = self.compute_losses(batch)
        self.log_metrics(batch, terms)
        return terms["loss"]  # a non-finite loss gives non-finite gradients: see on_before_optimizer_step

    def entropy_term(self, entropy: Tensor) -> Tensor:
        return -self.hparams.entropy_coef * entropy


class Reinforce(PolicyGradient):
    """REINFORCE (Williams 1992) on batches of whole episodes.

    Defaults are the seed recipe: CartPole-v1, 4-128-2 ReLU MLP, Adam 1e-2, γ 0.99, one episode
    per update, returns normalised over the batch, loss ``Σ_t -log π(a_t|s_t) G_t``.

    Args:
        episodes_per_batch: whole episodes per update.
        normalize_returns: ``(w - mean) / (std + 1e-9)`` on the policy weights (returns or advantages).
        reduction: ``sum`` (the seed) or ``mean`` over the batch's steps.
        baseline: ``none``; ``mean`` (subtract the batch mean return); ``value`` (a learned V(s),
            trained by MSE on the returns; the policy uses ``G - V(s)``). ``value`` builds a critic
            (``critic="separate"`` unless ``critic`` says ``shared``).
        **kwargs: the shared arguments of :class:`PolicyGradient`.
    """

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        episodes_per_batch: int = 1,
        normalize_returns: bool = True,
        reduction: Literal["sum", "mean"] = "sum",
        baseline: Literal["none", "mean", "value"] = "none",
        **kwargs: Any,
    ):
        require(episodes_per_batch >= 1, f"episodes_per_batch must be >= 1, got {episodes_per_batch}")
        require(reduction in ("sum", "mean"), f"reduction must be 'sum' or 'mean', got {reduction!r}")
        require(baseline in ("none", "mean", "value"), f"baseline must be none, mean or value, got {baseline!r}")
        if baseline == "value" and kwargs.get("critic", "none") == "none":
            kwargs["critic"] = "separate"
        require(baseline == "value" or kwargs.get("critic", "none") == "none",
                 "a critic is only used with baseline='value'")
        super().__init__(env_id, **kwargs)

    @property
    def batch_columns(self) -> int:
        return 1  # episodes laid end to end

    def make_dataset(self, collector: Collector) -> EpisodeDataset:
        return EpisodeDataset(collector, self.policy, self.hparams.episodes_per_batch)

    def compute_losses(self, batch: Batch) -> dict[str, Tensor]:
        """Loss terms for one batch of whole episodes; ``loss`` is their weighted sum.

        Returns are Monte-Carlo, as in the seed: an episode cut by a time limit ends there.
        """
        hp = self.hparams
        returns = discounted_returns(
            self.scaled_rewards(batch), batch.terminated, batch.truncated, hp.gamma
        ).flatten()
        log_probs, entropy, values = self.policy.evaluate(
            batch.observations.flatten(0, 1), batch.actions.flatten(0, 1)
        )
        weights = returns
        if hp.baseline == "mean":
            weights = returns - returns.mean()
        elif hp.baseline == "value":
            weights = returns - values.detach()
        if hp.normalize_returns:
            weights = normalize(weights, eps=1e-9)
        reduce = torch.sum if hp.reduction == "sum" else torch.mean
        terms = {
            "policy_loss": losses.reinforce_loss(log_probs, weights, hp.reduction),
            "entropy": entropy.mean(),
        }
        loss = terms["policy_loss"] + self.entropy_term(reduce(entropy))
        if values is not None:
            terms["value_loss"] = losses.value_loss(values, returns)
            loss = loss + hp.value_coef * terms["value_loss"]
        terms["loss"] = loss
        return terms


class ActorCriticBase(PolicyGradient):
    """Shared rollout handling of A2C and PPO: ``n_steps × num_envs`` batches and GAE(λ)."""

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        n_steps: int = 5,
        gae_lambda: float = 1.0,
        normalize_advantages: bool = False,
        **kwargs: Any,
    ):
        require(n_steps >= 1, f"n_steps must be >= 1, got {n_steps}")
        require(0.0 <= gae_lambda <= 1.0, f"gae_lambda must be in [0, 1], got {gae_lambda}")
        kwargs.setdefault("critic", "separate")
        require(kwargs["critic"] != "none",
                f"actor-critic methods need critic='separate' or 'shared', got {kwargs['critic']!r}")
        super().__init__(env_id, **kwargs)

    def make_dataset(self, collector: Collector) -> RolloutDataset:
        return RolloutDataset(collector, self.policy, self.hparams.n_steps)

    def advantages(self, batch: Batch, values: Tensor) -> tuple[Tensor, Tensor]:
        """GAE advantages and value targets ``[T, N]``; bootstraps truncated episodes and the tail."""
        with torch.no_grad():
            next_values = self.policy.value(batch.next_observations.flatten(0, 1))
        next_values = next_values.view_as(batch.rewards)
        advantages = gae(
            self.scaled_rewards(batch), values.detach(), next_values, batch.terminated,
            batch.truncated, self.hparams.gamma, self.hparams.gae_lambda,
        )  # the recursion ends at the rollout's tail, where δ bootstraps from V(s_T)
        return advantages, advantages + values.detach()


class A2C(ActorCriticBase):
    """Advantage actor-critic (synchronous A3C): one gradient step per rollout.

    Args:
        n_steps: steps per env per rollout.
        gae_lambda: GAE λ; 1.0 gives n-step returns.
        normalize_advantages: normalise advantages over the rollout.
        **kwargs: the shared arguments of :class:`PolicyGradient` (defaults here: 8 envs, a
            separate critic, lr 7e-4, gradient norm clipped at 0.5).
    """

    def __init__(self, env_id: str = "CartPole-v1", **kwargs: Any):
        kwargs.setdefault("num_envs", 8)
        kwargs.setdefault("lr", 7e-4)
        kwargs.setdefault("max_grad_norm", 0.5)
        super().__init__(env_id, **kwargs)

    def compute_losses(self, batch: Batch) -> dict[str, Tensor]:
        hp = self.hparams
        log_probs, entropy, values = self.policy.evaluate(
            batch.observations.flatten(0, 1), batch.actions.flatten(0, 1)
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
            terms["policy_loss"] + hp.value_coef * terms["value_loss"] + self.entropy_term(terms["entropy"])
        )
        return terms


class PPO(ActorCriticBase):
    """Proximal policy optimisation with the clipped surrogate (Schulman et al. 2017).

    Each rollout is reused for ``update_epochs`` passes in shuffled minibatches, with Lightning's
    manual optimisation. Defaults follow CleanRL's discrete-action PPO.

    Args:
        n_steps: steps per env per rollout.
        gae_lambda: GAE λ.
        normalize_advantages: normalise advantages per minibatch (a minibatch of one gives 0).
        update_epochs: passes over each rollout.
        minibatch_size: transitions per gradient step; ``None`` uses the whole rollout.
        clip_range: ε of the clipped surrogate.
        clip_range_vf: clip value updates to ±this around the old values; ``None`` disables it.
        target_kl: stop the passes early once the approximate KL of a pass exceeds this.
        anneal_clip_range: decay ``clip_range`` linearly to 0 over ``max_env_steps``.
        **kwargs: the shared arguments of :class:`PolicyGradient` (defaults here: 4 envs,
            64-64 MLP, a separate critic, lr 2.5e-4, gradient norm clipped at 0.5, value_coef 0.5).
    """

    def __init__(
        self,
        env_id: str = "CartPole-v1",
        n_steps: int = 128,
        gae_lambda: float = 0.95,
        normalize_advantages: bool = True,
        update_epochs: int = 4,
        minibatch_size: int | None = 128,
        clip_range: float = 0.2,
        clip_range_vf: float | None = None,
        target_kl: float | None = None,
        anneal_clip_range: bool = False,
        **kwargs: Any,
    ):
        require(update_epochs >= 1, f"update_epochs must be >= 1, got {update_epochs}")
        require(minibatch_size is None or minibatch_size >= 1, f"minibatch_size must be >= 1 or None, got {minibatch_size}")
        require(clip_range > 0, f"clip_range must be > 0, got {clip_range}")
        require(clip_range_vf is None or clip_range_vf > 0, f"clip_range_vf must be > 0 or None, got {clip_range_vf}")
        require(target_kl is None or target_kl > 0, f"target_kl must be > 0 or None, got {target_kl}")
        require(not anneal_clip_range or kwargs.get("max_env_steps") is not None,
                 "anneal_clip_range needs max_env_steps (the schedule's length)")
        kwargs.setdefault("num_envs", 4)
        kwargs.setdefault("hidden_sizes", (64, 64))
        kwargs.setdefault("lr", 2.5e-4)
        kwargs.setdefault("max_grad_norm", 0.5)
        super().__init__(
            env_id, n_steps=n_steps, gae_lambda=gae_lambda,
            normalize_advantages=normalize_advantages, **kwargs,
        )
        self.automatic_optimization = False
        self.shuffle = torch.Generator().manual_seed(self.hparams.seed)

    def minibatch_losses(
        self, obs: Tensor, actions: Tensor, old_log_probs: Tensor, old_values: Tensor,
        advantages: Tensor, returns: Tensor, clip_range: float,
    ) -> dict[str, Tensor]:
        """PPO's loss terms on one minibatch of flat transitions."""
        hp = self.hparams
        log_probs, entropy, values = self.policy.evaluate(obs, actions)
        if hp.normalize_advantages:
            advantages = normalize(advantages)
        policy_loss, approx_kl, clip_fraction = losses.ppo_clip_loss(
            log_probs, old_log_probs, advantages, clip_range
        )
        terms = {
            "policy_loss": policy_loss,
            "value_loss": losses.value_loss(values, returns, old_values, hp.clip_range_vf),
            "entropy": entropy.mean(),
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
        }
        terms["loss"] = (
            policy_loss + hp.value_coef * terms["value_loss"] + self.entropy_term(terms["entropy"])
        )
        return terms

    def rollout_data(self, batch: Batch) -> list[Tensor]:
        """The real transitions of a rollout as flat tensors, in ``minibatch_losses`` order:
        observations, actions, old log-probs, old values, advantages, returns."""
        obs, actions = batch.observations.flatten(0, 1), batch.actions.flatten(0, 1)
        with torch.no_grad():
            old_log_probs, _, old_values = self.policy.evaluate(obs, actions)
        advantages, returns = self.advantages(batch, old_values.view_as(batch.rewards))
        mask = batch.mask.flatten()
        return [obs[mask], actions[mask], old_log_probs[mask], old_values[mask],
                advantages.flatten()[mask], returns.flatten()[mask]]

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        hp = self.hparams
        optimizer = self.optimizers()
        data = self.rollout_data(batch)
        size = data[0].shape[0]
        # Every process must take the same number of gradient steps (DDP all-reduces each one),
        # but autoreset steps make the number of real transitions differ: count minibatches on
        # the smallest process's rollout and split each process's own data into that many.
        smallest = int(_all_reduce(torch.tensor(size, device=self.device), "min"))
        minibatches = -(-smallest // hp.minibatch_size) if hp.minibatch_size else 1
        clip_range = hp.clip_range * (1.0 - self.progress) if hp.anneal_clip_range else hp.clip_range
        history: list[dict[str, Tensor]] = []
        for _ in range(hp.update_epochs):
            # a full-batch epoch needs no shuffle: its gradient does not depend on the order
            parts = [data]
            if minibatches > 1:
                order = torch.randperm(size, generator=self.shuffle).to(self.device)
                parts = [[d[index] for d in data] for index in order.tensor_split(minibatches)]
            for part in parts:
                terms = self.minibatch_losses(*part, clip_range=clip_range)
                optimizer.zero_grad()
                self.manual_backward(terms["loss"])
                optimizer.step()  # gradient clipping: on_before_optimizer_step
                history.append(terms)
            if hp.target_kl is not None and _all_reduce(history[-1]["approx_kl"], "mean") > hp.target_kl:
                break
        metrics = {k: torch.stack([h[k].detach() for h in history]).mean() for k in history[0]}
        metrics["explained_variance"] = losses.explained_variance(data[3], data[5])
        metrics["updates"] = torch.tensor(float(len(history)))
        self.log_metrics(batch, metrics)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["pg_lightning"]["shuffle_rng"] = self.shuffle.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.shuffle.set_state(checkpoint["pg_lightning"]["shuffle_rng"])
