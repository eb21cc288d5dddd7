"""The run every algorithm shares: the collector's lifecycle, evaluation, the update's frame and
checkpoint state, wired to the owners of the rest (``RunStatistics``, ``Normalizer``,
``GradientStep``, ``LightningSpeedPaths``). The algorithms (one file each) add their losses."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from pg_lightning import distributed
from pg_lightning.agent import Agent
from pg_lightning.batch import Batch
from pg_lightning.collector import Collector
from pg_lightning.data import EpisodeDataset, RolloutDataset, SeedsDataset
from pg_lightning.envs import env_spec, probe_spaces
from pg_lightning.gradient_step import GradientStep
from pg_lightning.lightning_speed import LightningSpeedPaths
from pg_lightning.loggers import run_folder
from pg_lightning.modules.arguments import check_shared_arguments
from pg_lightning.modules.checkpoint_state import CheckpointState
from pg_lightning.modules.evaluation_steps import EvaluationSteps
from pg_lightning.modules.run_counters import RunCounters
from pg_lightning.modules.seed_table import SeedTable
from pg_lightning.normalization import Normalizer
from pg_lightning.optim import Adam, StackedAdam, clear_gradients
from pg_lightning.policies import ActorCritic
from pg_lightning.run_statistics import RunStatistics, aggregate
from pg_lightning.seed_loggers import SeedLoggers
from pg_lightning.seed_stack import SeedStack
from pg_lightning.statistics import write_summary
from pg_lightning.trainer_checks import check_trainer, validation_cadence_set


class PolicyGradient(RunCounters, EvaluationSteps, CheckpointState, SeedTable, LightningSpeedPaths):
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
        seeds = [hp.seed + k for k in range(hp.num_seeds)]
        policies = [self.build_policy(seed) for seed in seeds]
        normalizers = [Normalizer(p.obs_rms, hp.normalize_rewards, hp.gamma, self.batch_columns) for p in policies]
        self.policy, self.normalizer = policies[0], normalizers[0]  # seed index 0, under a one-seed run's keys
        if hp.num_seeds > 1:  # the others' weights and statistics
            self.seed_policies, self.seed_normalizers = nn.ModuleList(policies[1:]), nn.ModuleList(normalizers[1:])
        self.agents = [self.make_agent(*args) for args in zip(seeds, policies, normalizers)]
        self.seed_loggers: SeedLoggers | None = None  # each seed's own loggers, in a many-seeds fit
        self.seed_metrics = RunStatistics()  # publishes a many-seeds run's aggregate metrics
        self.summary: dict[str, Any] | None = None  # a many-seeds fit's summary.json
        self.stack: SeedStack | None = None  # the seeds' parameters as one table, while a fit trains them together

    def build_policy(self, seed: int) -> ActorCritic:
        """The policy network of seed ``seed``, initialised from it alone."""
        hp = self.hparams
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ActorCritic(
                self.observation_space, self.action_space, [int(h) for h in hp.hidden_sizes],
                hp.activation, self.critic, hp.normalize_observations, hp.log_std_init, hp.network,
            )

    def make_agent(self, seed: int, policy: ActorCritic, normalizer: Normalizer) -> Agent:
        statistics = RunStatistics()
        gradients = GradientStep(statistics, self.hparams.max_grad_norm, self.hparams.max_skipped_updates)
        return Agent(seed, policy, normalizer, statistics, gradients, torch.Generator().manual_seed(seed))

    @property
    def num_seeds(self) -> int:
        return self.hparams.num_seeds

    @property
    def run_statistics(self) -> RunStatistics:
        """Seed index 0's statistics (the run's, with one seed)."""
        return self.agents[0].statistics

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
    def make_collector(self, agent: Agent | None = None) -> Collector:
        """This process's collector for ``agent`` (default: the first seed's): env seeds
        ``seed + rank * num_envs + i``."""
        hp, agent = self.hparams, self.agent(agent)
        collector = Collector(hp.env_id, hp.num_envs, hp.env_kwargs, hp.vectorization,
                              seed=agent.seed + self.global_rank * hp.num_envs, wrappers=hp.wrappers)
        if agent.collector_state is not None:
            collector.load_state_dict(agent.collector_state)
            agent.collector_state = None
        return collector

    def make_dataset(self, agent: Agent) -> EpisodeDataset | RolloutDataset:
        raise NotImplementedError  # the dataset that plays agent.policy with agent.collector

    def setup(self, stage: str) -> None:
        check_trainer(self.trainer, self)
        super().setup(stage)

    def evaluates_during_fit(self) -> bool:
        return bool(self.hparams.eval_every or validation_cadence_set(self.trainer))

    def train_dataloader(self) -> EpisodeDataset | RolloutDataset | SeedsDataset:
        """The dataset itself, of length one: no DataLoader iterator and prefetching machinery per epoch,
        and Lightning asks for the one batch, collected then, by the weights it updates. With many
        seeds, one batch per seed that is still training."""
        for agent in self.agents:
            if agent.collector is None:
                agent.collector = self.make_collector(agent)
                agent.normalizer.restart()
        self.share_collection()
        if self.num_seeds == 1:
            return self.make_dataset(self.agents[0])
        return SeedsDataset([self.make_dataset(agent) for agent in self.agents],
                            lambda: [agent.active for agent in self.agents])

    def teardown(self, stage: str) -> None:
        super().teardown(stage)
        for agent in self.agents:
            if agent.collector is not None and stage == "fit":
                agent.collector_state = agent.collector.state_dict()  # a later save or fit continues it
                agent.collector.close()
                agent.collector = None
        self.end_collection()

    # ---- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """Adam (fused on the CPU and CUDA, the faster kernel for small networks); with ``anneal_lr``
        a scheduler that sets ``annealed(lr)`` after every update. Many seeds of the built-in MLP
        are stacked (``SeedStack``) and stepped by one ``StackedAdam``, which anneals each seed's
        rate itself (``set_seed_rates``); other networks get one parameter group per seed (Adam is
        elementwise: each seed's group is that seed's own Adam) and a rate schedule per group."""
        hp = self.hparams
        if self.stack_seeds():
            return StackedAdam(list(self.stack.leaves.values()), self.stack.table, self.stack.grads, lr=hp.lr)
        params = self.parameters() if self.num_seeds == 1 else [{"params": a.policy.parameters()} for a in self.agents]
        optimizer = Adam(params, lr=hp.lr, fused=self.device.type in ("cpu", "cuda"))
        if not hp.anneal_lr:
            return optimizer
        schedules = [lambda _, agent=agent: self.annealed(1.0, agent) for agent in self.agents]
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedules if self.num_seeds > 1 else schedules[0])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def agent(self, agent: Agent | None = None) -> Agent:
        """``agent``, or seed index 0's (the one agent of a one-seed run) when it is ``None``."""
        return self.agents[0] if agent is None else agent

    def progress_of(self, agent: Agent | None = None) -> float:
        """Fraction of ``agent``'s env-step budget used (0 without a budget)."""
        budget = self.hparams.max_env_steps
        return min(self.agent(agent).statistics.env_steps / budget, 1.0) if budget else 0.0

    @property
    def progress(self) -> float:
        """Fraction of the (first) seed's env-step budget used."""
        return self.progress_of()

    def annealed(self, value: float, agent: Agent | None = None) -> float:
        """``value`` on the linear schedule to 0 over ``agent``'s env-step budget that ``anneal_lr``
        (for the learning rate) and PPO's ``anneal_clip_range`` follow."""
        return value * (1.0 - self.progress_of(agent))

    def gradient_step(self, optimizer: Any, loss: Tensor) -> None:
        """One gradient step on ``loss`` in manual optimisation: clear, backward, then the optimizer's
        step, inside which the guard and clip run on unscaled gradients (``on_before_optimizer_step``)."""
        clear_gradients(optimizer)
        self.manual_backward(loss)
        optimizer.step()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # AMP has unscaled the gradients by now; with many seeds each is guarded and clipped on its own
        if isinstance(optimizer, StackedAdam):
            self.guard_and_clip_seeds(optimizer)
            return
        if self.num_seeds == 1:
            self.agents[0].gradients.guard_and_clip(self.trainer, optimizer)
            return
        for agent, group in zip(self.agents, optimizer.param_groups):
            agent.gradients.guard_and_clip(self.trainer, optimizer, group["params"])

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        clear_gradients(optimizer)

    # ---- the update -------------------------------------------------------------------------
    def compute_losses(self, batch: Batch, agent: Agent | None = None) -> dict[str, Tensor]:
        """Named loss terms and diagnostics of ``agent`` (default: the first seed) for its
        ``batch``; ``loss`` is the one to minimise."""
        raise NotImplementedError

    def add_entropy_bonus(self, loss: Tensor, entropy: Tensor) -> Tensor:
        """``loss - entropy_coef · entropy``; without a bonus the entropy stays out of the graph
        (its backward is a tenth of a small network's)."""
        coef = self.hparams.entropy_coef
        return loss - coef * entropy if coef else loss

    def smallest_batch(self, batch: Batch) -> int:
        """Real transitions in the smallest process's batch (0: a rollout of autoreset steps only)."""
        return int(distributed.reduce(self.trainer, [batch.num_steps], "min")[0])

    def seed_batches(self, batch: Batch | list[Batch | None]) -> list[tuple[Agent, Batch]]:
        """The training seeds with their batches (one seed: the batch itself)."""
        if self.num_seeds == 1:
            return [(self.agents[0], batch)]
        return [(agent, b) for agent, b in zip(self.agents, batch) if b is not None]

    def training_step(self, batch: Batch | list[Batch | None], batch_idx: int) -> Tensor | None:
        """One update in automatic optimisation: the seeds' losses summed (each seed's parameters
        get its own loss's gradient); a seed whose batch holds no transition on some process is
        skipped on every process, and ``None`` returned when no seed has a loss."""
        if isinstance(self.trainer.optimizers[0], StackedAdam):
            return self.stacked_update(self.seed_batches(batch), self.trainer.optimizers[0])
        losses = []
        for agent, seed_batch in self.seed_batches(batch):
            terms = self.compute_losses(seed_batch, agent) if self.smallest_batch(seed_batch) else {}
            self.end_update(seed_batch, terms, agent)
            if terms:
                losses.append(terms["loss"])
        self.end_seeds_update()
        # Lightning steps on this loss; the guard and clip run in on_before_optimizer_step
        return sum(losses[1:], losses[0]) if losses else None

    def end_update(self, batch: Batch, terms: dict[str, Tensor], agent: Agent) -> None:
        """Fold ``agent``'s batch into its normalisation statistics and counters (over all
        processes), stop it at its env-step budget and publish its metrics (``RunStatistics``;
        with many seeds, to its own loggers). The statistics change after the loss used them and
        before any callback can save a checkpoint."""
        statistics = agent.statistics
        window = agent.collector.recent_returns if agent.collector is not None else ()
        statistics.count(self.trainer, batch.env_steps, batch.episode_returns, batch.episode_lengths, window)
        budget = self.hparams.max_env_steps
        if budget is not None and statistics.env_steps >= budget:
            agent.stop("budget")
            if all(not a.active for a in self.agents):
                self.trainer.should_stop = True
        agent.normalizer.update(self.trainer, batch.observations, batch.mask, batch.rewards,
                                batch.terminated, batch.truncated)
        index = self.agents.index(agent)
        metrics = statistics.metrics(terms, budget, self.learning_rate(index))
        if self.num_seeds == 1:
            statistics.publish(self.trainer, metrics)
        elif self.seed_loggers is not None:
            statistics.hold(self.trainer, metrics, functools.partial(self.seed_loggers.log_metrics, index))

    def end_seeds_update(self) -> None:
        """With many seeds, the seeds' aggregate (``run_statistics.aggregate``) where a one-seed run
        puts its metrics; the run ends when every seed has stopped."""
        if self.num_seeds == 1:
            return
        self.trainer.should_stop = self.trainer.should_stop or all(not a.active for a in self.agents)
        latest = [agent.statistics.latest for agent in self.agents if agent.statistics.latest]
        self.seed_metrics.publish(self.trainer, aggregate(latest))

    def on_train_start(self) -> None:
        budget = self.hparams.max_env_steps
        for agent in self.agents:
            agent.statistics.start_clock()
            if agent.stopped == "budget" and (budget is None or agent.statistics.env_steps < budget):
                agent.stopped = None  # a larger budget than the one it stopped at: it trains on
        if self.num_seeds > 1 and self.seed_loggers is None:
            self.seed_loggers = SeedLoggers(self.trainer, [agent.seed for agent in self.agents])

    def on_train_end(self) -> None:
        # the final update, when a callback (StopWhenSolved, EarlyStopping) ended the run
        if self.num_seeds == 1:
            self.run_statistics.log(self.trainer)
            return
        self.seed_metrics.log(self.trainer)
        for index, agent in enumerate(self.agents):
            agent.statistics.log(self.trainer, functools.partial(self.seed_loggers.log_metrics, index))
        self.seed_loggers.finalize("success")
        self.seed_loggers = None
        if self.trainer.is_global_zero:
            self.summary = write_summary(run_folder(self.trainer) / "summary.json", self.seed_records())

