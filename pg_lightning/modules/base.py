"""The run every algorithm shares: the collector's lifecycle, evaluation, the update's frame and
checkpoint state, wired to the owners of the rest (``RunStatistics``, ``Normalizer``,
``GradientStep``, ``LightningSpeedPaths``). The algorithms (one file each) add their losses."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader

from pg_lightning import checkpoints, distributed
from pg_lightning.batch import Batch
from pg_lightning.collector import Collector
from pg_lightning.data import EpisodeDataset, RolloutDataset
from pg_lightning.envs import env_spec, probe_spaces
from pg_lightning.evaluation import (
    EVAL_SEED_OFFSET,
    EvaluationDataset,
    evaluate,
    evaluation_metrics,
    log_video,
    video_folder,
)
from pg_lightning.gradient_step import GradientStep
from pg_lightning.lightning_speed import LightningSpeedPaths
from pg_lightning.modules.arguments import check_shared_arguments
from pg_lightning.normalization import Normalizer
from pg_lightning.optim import Adam, clear_gradients
from pg_lightning.policies import ActorCritic
from pg_lightning.run_statistics import RunStatistics
from pg_lightning.trainer_checks import check_trainer, validation_cadence_set


class PolicyGradient(LightningSpeedPaths):
    """Base of the algorithms: owns the run, not used directly.

    One training epoch is one batch is one policy update. An algorithm declares its whole
    signature, with its own defaults, and calls ``super().__init__()`` without arguments: the
    base saves them as ``hparams`` (Lightning reads the calling ``__init__``'s arguments), checks
    them (``check_hyperparameters``) and builds the run from them. Training runs until
    ``max_env_steps`` env steps (summed over processes) or the Trainer's own limits; give the
    Trainer ``max_epochs=-1`` to let the budget decide.
    """

    cpu_batch_types = (Batch,)  # the collector's tensors are on the CPU

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.check_hyperparameters()
        hp = self.hparams
        self.env_spec = env_spec(hp.env_id)
        self.observation_space, self.action_space = probe_spaces(hp.env_id, hp.env_kwargs, hp.wrappers)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp.seed)
            self.policy = ActorCritic(
                self.observation_space, self.action_space, [int(h) for h in hp.hidden_sizes],
                hp.activation, self.critic, hp.normalize_observations, hp.log_std_init, hp.network,
            )
        self.normalizer = Normalizer(self.policy.obs_rms, hp.normalize_rewards, hp.gamma, self.batch_columns)
        self.run_statistics = RunStatistics()
        self.gradients = GradientStep(self.run_statistics, hp.max_grad_norm, hp.max_skipped_updates)
        self.collector: Collector | None = None
        self._collector_state: dict[str, Any] | None = None

    def check_hyperparameters(self) -> None:
        """A ConfigError for a bad argument, before anything is built; algorithms add their own."""
        check_shared_arguments(self.hparams)

    @property
    def critic(self) -> str:
        """The policy's critic: ``none``, ``separate`` or ``shared``."""
        return self.hparams.critic

    @property
    def batch_columns(self) -> int:
        """N of the ``[T, N]`` batches: one per env for rollouts, one for episode batches."""
        return self.hparams.num_envs

    # ---- the run's statistics (read-only; RunStatistics owns them) -----------------------------
    @property
    def env_steps(self) -> int:
        """Env steps so far, summed over processes."""
        return self.run_statistics.env_steps

    @property
    def episodes(self) -> int:
        return self.run_statistics.episodes

    @property
    def return_last100(self) -> float | None:
        """Mean return of the last 100 episodes (pooled over processes); ``None`` before the first."""
        return self.run_statistics.return_last100

    @property
    def skipped_updates(self) -> int:
        return self.run_statistics.skipped_updates

    @property
    def return_auc(self) -> float | None:
        """The sweep objective: ``RunStatistics.return_auc`` over ``max_env_steps``."""
        return self.run_statistics.return_auc(self.hparams.max_env_steps)

    # ---- data -------------------------------------------------------------------------------
    def make_collector(self) -> Collector:
        """This process's collector: env seeds ``seed + rank * num_envs + i``."""
        hp = self.hparams
        collector = Collector(hp.env_id, hp.num_envs, hp.env_kwargs, hp.vectorization,
                              seed=hp.seed + self.global_rank * hp.num_envs, wrappers=hp.wrappers)
        if self._collector_state is not None:
            collector.load_state_dict(self._collector_state)
            self._collector_state = None
        return collector

    def make_dataset(self, collector: Collector) -> EpisodeDataset | RolloutDataset:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        check_trainer(self.trainer, self)
        super().setup(stage)

    def evaluates_during_fit(self) -> bool:
        return bool(self.hparams.eval_every or validation_cadence_set(self.trainer))

    def train_dataloader(self) -> EpisodeDataset | RolloutDataset:
        """The dataset itself, of length one: no DataLoader iterator and prefetching machinery per epoch,
        and Lightning asks for the one batch, collected then, by the weights it updates."""
        if self.collector is None:
            self.collector = self.make_collector()
            self.normalizer.restart()
        return self.make_dataset(self.collector)

    def teardown(self, stage: str) -> None:
        super().teardown(stage)
        if self.collector is not None and stage == "fit":
            self._collector_state = self.collector.state_dict()  # a later save or fit continues it
            self.collector.close()
            self.collector = None

    # ---- evaluation -------------------------------------------------------------------------
    def val_dataloader(self) -> DataLoader:
        return DataLoader(EvaluationDataset(self._evaluation_due, self._play_evaluation), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(EvaluationDataset(lambda: True, self._play_evaluation), batch_size=None)

    def _evaluation_due(self) -> bool:
        """Whether this validation run plays episodes: always in ``validate``; during ``fit`` (where
        validation runs only with ``eval_every`` or a Trainer cadence: see ``evaluates_during_fit``)
        every ``eval_every`` updates, or at each run of the Trainer's cadence; never in the sanity check."""
        if self.trainer.state.fn != "fit":
            return True
        every = self.hparams.eval_every
        return not self.trainer.sanity_checking and (not every or (self.current_epoch + 1) % every == 0)

    def _play_evaluation(self) -> dict[str, Any]:
        hp = self.hparams
        rank = self.global_rank
        folder = video_folder(self.trainer) if hp.record_video and rank == 0 else None
        return evaluate(self.policy, hp.env_id, hp.eval_episodes, hp.seed + EVAL_SEED_OFFSET + rank * hp.eval_episodes,
                        hp.env_kwargs, folder, video_prefix=f"update{self.current_epoch}", wrappers=hp.wrappers)

    def _log_evaluation(self, results: dict[str, Tensor], prefix: str) -> None:
        metrics, shown = evaluation_metrics(results, prefix, self.env_steps)
        self.log_dict(metrics, sync_dist=True, batch_size=len(results["returns"]))
        self.log_dict(shown, prog_bar=True, sync_dist=True, batch_size=len(results["returns"]))
        if self.hparams.record_video and self.global_rank == 0:
            log_video(self.loggers, video_folder(self.trainer), f"update{self.current_epoch}", f"{prefix}/video",
                      self.env_steps, self.trainer.current_epoch)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_evaluation(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._log_evaluation(batch, "test")

    # ---- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """Adam (fused on the CPU and CUDA, the faster kernel for small networks); with
        ``anneal_lr`` a scheduler that sets ``annealed(lr)`` after every update."""
        hp = self.hparams
        optimizer = Adam(self.parameters(), lr=hp.lr, fused=self.device.type in ("cpu", "cuda"))
        if not hp.anneal_lr:
            return optimizer
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: self.annealed(1.0))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    @property
    def progress(self) -> float:
        """Fraction of the env-step budget used (0 without a budget)."""
        budget = self.hparams.max_env_steps
        return min(self.env_steps / budget, 1.0) if budget else 0.0

    def annealed(self, value: float) -> float:
        """``value`` on the linear schedule to 0 over the env-step budget that ``anneal_lr`` (for the
        learning rate) and PPO's ``anneal_clip_range`` follow."""
        return value * (1.0 - self.progress)

    def gradient_step(self, optimizer: Any, loss: Tensor) -> None:
        """One gradient step on ``loss`` in manual optimisation: clear, backward, then the optimizer's
        step, inside which the guard and clip run on unscaled gradients (``on_before_optimizer_step``)."""
        clear_gradients(optimizer)
        self.manual_backward(loss)
        optimizer.step()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.gradients.guard_and_clip(self.trainer, optimizer)  # AMP has unscaled the gradients by now

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        clear_gradients(optimizer)

    # ---- the update -------------------------------------------------------------------------
    def compute_losses(self, batch: Batch) -> dict[str, Tensor]:
        """Named loss terms and diagnostics for ``batch``; ``loss`` is the one to minimise."""
        raise NotImplementedError

    def add_entropy_bonus(self, loss: Tensor, entropy: Tensor) -> Tensor:
        """``loss - entropy_coef · entropy``; without a bonus the entropy stays out of the graph
        (its backward is a tenth of a small network's)."""
        coef = self.hparams.entropy_coef
        return loss - coef * entropy if coef else loss

    def smallest_batch(self, batch: Batch) -> int:
        """Real transitions in the smallest process's batch (0: a rollout of autoreset steps only)."""
        return int(distributed.reduce(self.trainer, [batch.num_steps], "min")[0])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        """One update in automatic optimisation; skipped on every process (returning ``None``)
        when some process's batch holds no transition."""
        if self.smallest_batch(batch) == 0:
            self.end_update(batch, {})
            return None
        terms = self.compute_losses(batch)
        self.end_update(batch, terms)
        # Lightning steps on this loss; the guard and clip run in on_before_optimizer_step
        return terms["loss"]

    def end_update(self, batch: Batch, terms: dict[str, Tensor]) -> None:
        """Fold the batch into the normalisation statistics and the run's counters (over all
        processes), stop at the env-step budget and publish this update's metrics
        (``RunStatistics.publish``). The statistics change after the loss used them and before
        any callback can save a checkpoint."""
        window = self.collector.recent_returns if self.collector is not None else ()
        self.run_statistics.count(self.trainer, batch.env_steps, batch.episode_returns, batch.episode_lengths, window)
        budget = self.hparams.max_env_steps
        if budget is not None and self.env_steps >= budget:
            self.trainer.should_stop = True
        self.normalizer.update(self.trainer, batch.observations, batch.mask, batch.rewards,
                               batch.terminated, batch.truncated)
        self.run_statistics.publish(self.trainer, terms, budget)

    def on_train_start(self) -> None:
        self.run_statistics.start_clock()

    def on_train_end(self) -> None:
        self.run_statistics.log(self.trainer)  # the final update, when a callback (StopWhenSolved, EarlyStopping) ended the run

    # ---- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what the weights do not hold: counters and every process's collector state."""
        local = {"collector": self.collector.state_dict() if self.collector is not None else self._collector_state}
        # the class, as LightningCLI records it, so `train.py validate --ckpt_path X` rebuilds this model
        checkpoint["hyper_parameters"].setdefault("_class_path", f"{type(self).__module__}.{type(self).__qualname__}")
        wandb_runs = [logger.version for logger in self.loggers if isinstance(logger, WandbLogger)]
        checkpoint[checkpoints.KEY] = checkpoints.make_entry(
            type(self).__name__, self.hparams.env_id, self.run_statistics.state_dict(),
            distributed.gather_objects(self.trainer, local),  # every rank calls this hook when saving
            wandb_runs[0] if wandb_runs and self.global_rank == 0 else None,
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoints.entry_of(checkpoint, "checkpoint")
        checkpoints.check_identity(state, type(self).__name__, self.hparams.env_id)
        self.run_statistics.load_state_dict(state)
        weights = checkpoint["state_dict"]  # saved before the Normalizer, reward statistics were "reward_scaler"
        for key in [k for k in weights if k.startswith("reward_scaler.")]:
            weights["normalizer.rewards." + key.removeprefix("reward_scaler.")] = weights.pop(key)
        self.normalizer.restart()  # the collector restarts every episode
        processes = state["processes"]
        if self.global_rank >= len(processes):  # more processes than when saved: fresh envs for the new ranks
            rank_zero_warn(f"checkpoint holds {len(processes)} processes' collectors; ranks "
                           f">= {len(processes)} start fresh envs (seeded by their rank)")
            return
        self._collector_state = processes[self.global_rank]["collector"]
        if self.collector is not None and self._collector_state is not None:
            self.collector.load_state_dict(self._collector_state)
            self._collector_state = None
