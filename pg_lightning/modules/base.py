"""The run every algorithm shares: collector, counters, metrics, evaluation, the non-finite guard,
normalisation statistics and checkpoint state. The algorithms (one file each) add their losses."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader

from pg_lightning import checkpoints, distributed
from pg_lightning.data import Batch, Collector, EpisodeDataset, RolloutDataset
from pg_lightning.envs import env_spec, probe_spaces
from pg_lightning.errors import TrainingError
from pg_lightning.evaluation import (
    EVAL_SEED_OFFSET, EvaluationDataset, evaluate, evaluation_metrics, log_video, video_folder,
)
from pg_lightning.normalization import RunningMeanStd, fold_statistics
from pg_lightning.optim import Adam, clear_gradients, clip_gradients, gradient_norm, gradients_finite
from pg_lightning.policies import ActorCritic
from pg_lightning.modules.arguments import check_shared_arguments
from pg_lightning.trainer_checks import check_trainer, validation_cadence_set

PROGRESS_BAR = ("train/return_last100", "train/episode_return")  # shown by any progress bar
_PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "env_steps", "episodes", "return_last100", "return_area", "_unlogged"})


class _NoProfiler(PassThroughProfiler):
    """Lightning's default no-op profiler, without building a context manager for every hook
    call (~1.8 µs, ~45 per update)."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._nothing


class PolicyGradient(L.LightningModule):
    """Base of the algorithms: owns the run, not used directly.

    One training epoch is one batch is one policy update. An algorithm declares its whole
    signature, with its own defaults, and calls ``super().__init__()`` without arguments: the
    base saves them as ``hparams`` (Lightning reads the calling ``__init__``'s arguments), checks
    them (``check_hyperparameters``) and builds the run from them. Training runs until
    ``max_env_steps`` env steps (summed over processes) or the Trainer's own limits; give the
    Trainer ``max_epochs=-1`` to let the budget decide.
    """

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
        self.reward_scaler = RunningMeanStd() if hp.normalize_rewards else None
        # the running discounted return per batch column, this process's own; every episode
        # restarts with a new collector, and so does this
        self.reward_running_return = torch.zeros(self.batch_columns)
        self.env_steps = 0  # summed over processes
        self.episodes = 0
        self.return_last100: float | None = None  # mean of the last 100 episodes, pooled
        self.return_area = 0.0  # Σ return_last100 · env steps of each update: see return_auc
        self.skipped_updates = 0
        self._skipped_in_a_row = 0
        self._unlogged: dict[str, Any] = {}  # the last update's metrics, until a logger has them
        self.collector: Collector | None = None
        self._collector_state: dict[str, Any] | None = None
        self._clock = (time.perf_counter(), 0)
        self._quiet: warnings.catch_warnings | None = None  # a warnings filter scoped to one fit
        self._limit_val_batches: int | float | None = None  # the Trainer's, while a fit without evaluation runs

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

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` around every hook call (~60 per update) and the
        # counters change every update; nn.Module.__setattr__ costs ~2.5-5 µs a call, and for
        # these plain values (never parameters, buffers or modules) it ends in object.__setattr__
        if name in _PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def setup(self, stage: str) -> None:
        check_trainer(self.trainer, self)
        trainer = self.trainer
        if type(trainer.profiler) is PassThroughProfiler:  # a user's profiler is kept
            trainer.profiler = _NoProfiler()
        self._restore_validation()  # left by a fit that raised (teardown did not run)
        if stage == "fit":  # restored in teardown
            if not (self.hparams.eval_every or validation_cadence_set(trainer)):
                # no evaluation in this fit: no validation loop either (~0.1 ms an update to skip)
                self._limit_val_batches, trainer.limit_val_batches = trainer.limit_val_batches, 0
            self._quiet = warnings.catch_warnings()
            self._quiet.__enter__()
            # Lightning's own use of a torch API that torch deprecated: nothing a user can change
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            # one batch per epoch is the design (train_dataloader), not a logging interval too long
            warnings.filterwarnings("ignore", message="The number of training batches")

    def _restore_validation(self) -> None:
        if self._limit_val_batches is not None:
            self.trainer.limit_val_batches, self._limit_val_batches = self._limit_val_batches, None

    def train_dataloader(self) -> EpisodeDataset | RolloutDataset:
        """The dataset itself, of length one: no DataLoader iterator and prefetching machinery per epoch
        (~0.2 ms), and Lightning asks for the one batch, collected then, by the weights it updates."""
        if self.collector is None:
            self.collector = self.make_collector()
            self.reward_running_return = torch.zeros(self.batch_columns)
        return self.make_dataset(self.collector)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, Batch) and device.type == "cpu":
            return batch  # the collector's tensors are on the CPU; Lightning's dataclass walk costs ~75 µs
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def teardown(self, stage: str) -> None:
        self._restore_validation()
        if stage == "fit" and self._quiet is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None
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
        validation runs only with ``eval_every`` or a Trainer cadence: see ``setup``) every
        ``eval_every`` updates, or at each run of the Trainer's cadence; never in the sanity check."""
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
        """Adam (fused on the CPU and CUDA: ~3x faster than the per-tensor loop on small networks);
        with ``anneal_lr`` a scheduler that sets lr · (1 - env steps / max_env_steps) after every update."""
        hp = self.hparams
        optimizer = Adam(self.parameters(), lr=hp.lr, fused=self.device.type in ("cpu", "cuda"))
        if not hp.anneal_lr:
            return optimizer
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0 - self.progress)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    @property
    def progress(self) -> float:
        """Fraction of the env-step budget used (0 without a budget)."""
        budget = self.hparams.max_env_steps
        return min(self.env_steps / budget, 1.0) if budget else 0.0

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the gradient norm, or drop the step if the gradients are not finite (which a
        non-finite loss also makes them). Runs in automatic and manual optimisation, after AMP
        unscaling; with a 16-bit GradScaler, overflow is the scaler's to handle."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        clip = self.hparams.max_grad_norm
        norm = gradient_norm(grads) if clip is not None else None
        if getattr(self.trainer.precision_plugin, "scaler", None) is None and not self.is_finite(
            math.isfinite(float(norm)) if norm is not None else gradients_finite(grads)
        ):
            clear_gradients(optimizer)  # parameters without a gradient are not updated
            return
        if clip is not None:
            clip_gradients(grads, clip, norm)

    def is_finite(self, finite: bool) -> bool:
        """Whether ``finite`` holds on every process; if not, count a skipped update (and give up
        after ``max_skipped_updates`` in a row). Every process decides the same way."""
        if distributed.reduce(self.trainer, [float(finite)], "min")[0]:
            self._skipped_in_a_row = 0
            return True
        self.skipped_updates += 1
        self._skipped_in_a_row += 1
        if self._skipped_in_a_row >= self.hparams.max_skipped_updates:
            raise TrainingError(
                f"{self._skipped_in_a_row} updates in a row had a non-finite loss or gradient "
                f"(last at env step {self.env_steps}); lower lr or check the env's rewards"
            )
        rank_zero_warn(f"non-finite loss or gradient at env step {self.env_steps}: update skipped")
        return False

    def scaled_rewards(self, batch: Batch) -> Tensor:
        """Rewards divided by the running std of discounted returns, if ``normalize_rewards``."""
        return batch.rewards if self.reward_scaler is None else self.reward_scaler.scale(batch.rewards)

    # ---- the update -------------------------------------------------------------------------
    def compute_losses(self, batch: Batch) -> dict[str, Tensor]:
        """Named loss terms and diagnostics for ``batch``; ``loss`` is the one to minimise."""
        raise NotImplementedError

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
        return terms["loss"]  # a non-finite loss gives non-finite gradients: see on_before_optimizer_step

    def end_update(self, batch: Batch, terms: dict[str, Tensor]) -> None:
        """Count the batch (over all processes), fold it into the normalisation statistics and
        publish this update's metrics.

        ``trainer.callback_metrics`` gets every metric after every update, so EarlyStopping,
        ModelCheckpoint(monitor=...) and any callback read this update's values (and a progress
        bar the returns, from ``trainer.progress_bar_metrics``), and the loggers
        get them every ``log_every_n_steps`` updates and at the end of a run, as Lightning writes
        logs. Both directly: ``self.log`` costs ~0.3 ms per key here, as much as a CartPole
        update. The statistics change after the loss used them and before any callback can
        save a checkpoint.
        """
        window = self.collector.recent_returns if self.collector is not None else ()
        steps, episodes, return_sum, length_sum, window_sum, window_size = distributed.reduce(self.trainer, [
            batch.env_steps, len(batch.episode_returns), float(batch.episode_returns.sum()),
            float(batch.episode_lengths.sum()), sum(window), len(window),
        ])
        self.env_steps += int(steps)
        self.episodes += int(episodes)
        self.return_last100 = window_sum / window_size if window_size else None
        trainer = self.trainer
        if self.hparams.max_env_steps is not None and self.env_steps >= self.hparams.max_env_steps:
            trainer.should_stop = True
        self.reward_running_return = fold_statistics(
            trainer, batch, self.policy.obs_rms, self.reward_scaler, self.reward_running_return, self.hparams.gamma
        )
        metrics = {f"train/{k}": v.detach() for k, v in terms.items()}
        metrics.update({
            "train/env_steps": self.env_steps,
            "train/episodes": self.episodes,
            "train/steps_per_second": (self.env_steps - self._clock[1]) / max(time.perf_counter() - self._clock[0], 1e-9),
            "train/learning_rate": trainer.optimizers[0].param_groups[0]["lr"],
            "train/skipped_updates": self.skipped_updates,
        })
        if window_size:
            metrics["train/return_last100"] = self.return_last100
            self.return_area += self.return_last100 * steps
            if self.hparams.max_env_steps:
                metrics["train/return_auc"] = self.return_auc
        if episodes:
            metrics["train/episode_return"] = return_sum / episodes
            metrics["train/episode_length"] = length_sum / episodes
        numbers = [k for k, v in metrics.items() if not isinstance(v, Tensor)]  # as tensors in one call
        callback_metrics = trainer.callback_metrics  # a property that gathers Lightning's own results each time
        callback_metrics.update(metrics)
        callback_metrics.update(zip(numbers, torch.tensor([metrics[k] for k in numbers], dtype=torch.float64).unbind()))
        trainer.progress_bar_metrics.update({k: metrics[k] for k in PROGRESS_BAR if k in metrics})
        self._unlogged = metrics
        if (trainer.current_epoch + 1) % trainer.log_every_n_steps == 0 or trainer.should_stop:
            self.log_update()

    def log_update(self) -> None:
        """Hand the last update's metrics to the loggers (rank zero's write), once."""
        if self._unlogged:
            logged = {k: float(v) for k, v in self._unlogged.items()}
            for logger in self.loggers:
                logger.log_metrics(logged, step=self.trainer.current_epoch)
            self._unlogged = {}

    @property
    def return_auc(self) -> float | None:
        """The sweep objective: the mean of ``return_last100`` over the env-step budget, the rest
        of the budget counted at the current value. Unlike ``return_last100``, which stopping at
        the threshold caps, it ranks a run that solves in 60k steps above one that needs 200k."""
        budget = self.hparams.max_env_steps
        if not budget or self.return_last100 is None:
            return None
        return (self.return_area + max(budget - self.env_steps, 0) * self.return_last100) / budget

    def on_train_start(self) -> None:
        self._clock = (time.perf_counter(), self.env_steps)  # steps/s counts from here

    def on_train_end(self) -> None:
        self.log_update()  # the final update, when a callback (StopWhenSolved, EarlyStopping) ended the run

    # ---- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what the weights do not hold: counters and every process's collector state."""
        local = {"collector": self.collector.state_dict() if self.collector is not None else self._collector_state}
        # the class, as LightningCLI records it, so `train.py validate --ckpt_path X` rebuilds this model
        checkpoint["hyper_parameters"].setdefault("_class_path", f"{type(self).__module__}.{type(self).__qualname__}")
        counters = {"env_steps": self.env_steps, "episodes": self.episodes, "skipped_updates": self.skipped_updates,
                    "return_area": self.return_area}
        wandb_runs = [logger.version for logger in self.loggers if isinstance(logger, WandbLogger)]
        checkpoint[checkpoints.KEY] = checkpoints.make_entry(
            type(self).__name__, self.hparams.env_id, counters,
            distributed.gather_objects(self.trainer, local),  # every rank calls this hook when saving
            wandb_runs[0] if wandb_runs and self.global_rank == 0 else None,
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoints.entry_of(checkpoint, "checkpoint")
        checkpoints.check_identity(state, type(self).__name__, self.hparams.env_id)
        self.env_steps, self.episodes = state["env_steps"], state["episodes"]
        self.skipped_updates = state["skipped_updates"]
        self.return_area = state.get("return_area", 0.0)
        processes = state["processes"]
        if self.global_rank >= len(processes):  # more processes than when saved: fresh envs for the new ranks
            rank_zero_warn(f"checkpoint holds {len(processes)} processes' collectors; ranks "
                           f">= {len(processes)} start fresh envs (seeded by their rank)")
            return
        self._collector_state = processes[self.global_rank]["collector"]
        if self.collector is not None and self._collector_state is not None:
            self.collector.load_state_dict(self._collector_state)
            self._collector_state = None
        self.reward_running_return = torch.zeros(self.batch_columns)  # the collector restarts every episode

    def add_entropy_bonus(self, loss: Tensor, entropy: Tensor) -> Tensor:
        """``loss - entropy_coef · entropy``; without a bonus the entropy stays out of the graph
        (its backward is ~10% of a small network's)."""
        coef = self.hparams.entropy_coef
        return loss - coef * entropy if coef else loss

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        clear_gradients(optimizer)
