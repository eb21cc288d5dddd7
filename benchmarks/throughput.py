"""Collector throughput, and Lightning's overhead against a plain PyTorch loop doing the same updates.

1. Collector: transitions per second playing the seed network (4-128-2) in 1, 8, 32, 64 and 512
   CartPole-v1 envs (median of 3 repeats), with the numpy actor and, for comparison, with the
   torch forward that CNNs, structured observations and user networks use. Then one env's episode
   batches (the seed recipe's collection) against a bare loop of the env and the same actor and
   the env alone, with short (untrained) and 500-step (balancing) episodes.
2. Overhead: ``Trainer.fit`` (CSV logging every 10 updates, as train.py logs) against a plain
   loop that performs the identical updates with the same collector, losses and optimiser, and
   writes the same metrics to the same kind of CSV logger every 10 updates — checked by
   comparing the final weights — for REINFORCE (the seed recipe) and PPO
   (configs/cartpole_ppo.yaml). Printed as median steps/s of 3 alternating runs each and the median ratio fit / plain
   (1.0 = no overhead).

    python benchmarks/throughput.py [--updates-scale 1.0]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger

from pg_lightning import PPO, Collector, Reinforce
from pg_lightning.policies import ActorCritic
from pg_lightning.registry import model_from_config

ROOT = Path(__file__).resolve().parents[1]


def collector_throughput(num_envs: int, numpy_actor: bool = True, vectorization: str = "auto",
                         transitions: int = 40_000, repeats: int = 3) -> float:
    """Median transitions per second of ``Collector.rollout`` with the seed network, run by the
    numpy actor or, as for CNNs, structured observations and user networks, the torch forward."""
    collector = Collector("CartPole-v1", num_envs, seed=0, vectorization=vectorization)
    policy = ActorCritic(collector.env.single_observation_space, collector.env.single_action_space)
    policy.numpy_actor_ok = numpy_actor
    steps = max(transitions // num_envs, 20)
    collector.rollout(policy, 10)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        collector.rollout(policy, steps)
        rates.append(steps * num_envs / (time.perf_counter() - start))
    collector.close()
    return statistics.median(rates)


def balancing(policy: ActorCritic) -> ActorCritic:
    """``policy`` (the seed network) set to a linear controller that holds CartPole for all 500
    steps: push right when 0.1·x + 0.5·ẋ + 10·θ + 2·θ̇ > 0, through two hidden units and steep
    logits, so episode batches are as long as a trained policy's."""
    gains = torch.tensor([0.1, 0.5, 10.0, 2.0])
    hidden, out = policy.trunk[0], policy.actor_out
    with torch.no_grad():
        for p in (hidden.weight, hidden.bias, out.weight, out.bias):
            p.zero_()
        hidden.weight[0], hidden.weight[1] = gains, -gains  # relu(z) - relu(-z) = z
        out.weight[1, 0] = out.weight[0, 1] = 50.0
    return policy


def episode_throughput(balanced: bool = False, steps: int = 40_000, repeats: int = 5) -> tuple[float, float, float]:
    """Median µs per env step of one-env episode batches (``Collector.episodes(policy, 1)``, the
    seed recipe's collection, batch building included), of a bare loop of the env's ``step`` and
    the same one-observation actor on the same env, and of the env's ``step`` alone; with the
    untrained seed network (~20-step episodes) or, ``balanced``, a policy that plays 500 steps."""
    collector = Collector("CartPole-v1", 1, seed=0)
    env = collector.env.env
    policy = ActorCritic(collector.env.single_observation_space, collector.env.single_action_space)
    if balanced:
        balancing(policy)
    rng = np.random.default_rng(0)

    def batches() -> int:
        return collector.episodes(policy, 1).env_steps

    def bare(act) -> int:
        obs, _ = env.reset()
        for t in itertools.count(1):
            obs, _, terminated, truncated, _ = env.step(act(obs))
            if terminated or truncated:
                return t

    sample, _ = policy.one_env_sampler(rng)  # the actor episode batches use, one observation at a time
    loops = (batches, lambda: bare(sample), lambda: bare(lambda obs: int(rng.random() < 0.5)))
    times: list[list[float]] = [[] for _ in loops]
    for _ in range(repeats):  # interleaved, so that a noisy neighbour slows all three alike
        for loop, out in zip(loops, times):
            done, start = 0, time.perf_counter()
            while done < steps // repeats:
                done += loop()
            out.append((time.perf_counter() - start) / done * 1e6)
    collector.close()
    return tuple(statistics.median(t) for t in times)


def fit(module: L.LightningModule, updates: int) -> float:
    """Seconds for ``Trainer.fit`` to run ``updates`` updates (after setup)."""
    with tempfile.TemporaryDirectory() as logs:
        trainer = L.Trainer(max_epochs=updates, logger=CSVLogger(logs), log_every_n_steps=10,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0)
        timer = _Timer()
        trainer.callbacks.append(timer)
        trainer.fit(module)
    return timer.seconds


class _Timer(L.Callback):
    def on_train_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_end(self, trainer, module):
        self.seconds = time.perf_counter() - self.start


class PlainLog:
    """What a hand-written loop logs: the update's terms and the counters, every 10 updates."""

    def __init__(self, folder: str):
        self.logger, self.updates, self.returns = CSVLogger(folder), 0, []

    def __call__(self, module, batch, terms: dict[str, torch.Tensor], collector) -> None:
        self.updates += 1
        self.returns += batch.episode_returns.tolist()
        if self.updates % 10:
            return
        metrics = {f"train/{k}": float(v.detach()) for k, v in terms.items()}
        metrics.update({"train/env_steps": module.env_steps, "train/episode_return": sum(self.returns) / max(len(self.returns), 1),
                        "train/return_last100": sum(collector.recent_returns) / len(collector.recent_returns)})
        self.logger.log_metrics(metrics, step=self.updates)
        self.returns = []


def plain_loop(module: L.LightningModule, updates: int, update) -> float:
    """Seconds for ``updates`` calls of ``update(module, collector, optimizer) -> (batch, terms)``,
    counting env steps and logging as a hand-written loop would, without Lightning."""
    collector = module.make_collector()
    module.gradient_seconds = 0.0  # what the update spends outside collection (PPO's counts it)
    optimizers = module.configure_optimizers()  # with anneal_lr a dict; the update sets the lr itself
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    with tempfile.TemporaryDirectory() as logs:
        log = PlainLog(logs)
        start = time.perf_counter()
        for _ in range(updates):
            batch, terms = update(module, collector, optimizer)
            module.run_statistics.env_steps += batch.env_steps
            log(module, batch, terms, collector)
        log.logger.save()
        seconds = time.perf_counter() - start
    collector.close()
    return seconds


def reinforce_update(module: Reinforce, collector, optimizer):
    """One REINFORCE update: a batch of episodes, one gradient step."""
    batch = collector.episodes(module.policy, module.hparams.episodes_per_batch)
    terms = module.compute_losses(batch)
    optimizer.zero_grad()
    terms["loss"].backward()
    optimizer.step()
    return batch, terms


def ppo_update(module: PPO, collector, optimizer):
    """One PPO update as ``PPO.training_step`` does it (full-batch epochs, or shuffled minibatches
    drawn from the module's own generator), as a hand-written loop would."""
    hp = module.hparams
    assert hp.target_kl is None and not hp.anneal_clip_range, "this loop has no early stop or clip schedule"
    for group in optimizer.param_groups:  # linear lr annealing over the env-step budget
        group["lr"] = hp.lr * (1.0 - module.progress) if hp.anneal_lr else hp.lr
    batch = collector.rollout(module.policy, hp.n_steps)
    start = time.perf_counter()
    data = module.rollout_data(batch)
    minibatches = -(-len(data) // hp.minibatch_size) if hp.minibatch_size else 1
    for _ in range(hp.update_epochs):
        parts = [data]
        if minibatches > 1:
            order = torch.randperm(len(data), generator=module.agents[0].shuffle)
            parts = [data.select(index) for index in order.tensor_split(minibatches)]
        for part in parts:
            terms = module.minibatch_losses(part, hp.clip_range)
            optimizer.zero_grad()
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), hp.max_grad_norm)
            optimizer.step()
    module.gradient_seconds += time.perf_counter() - start
    return batch, terms


def timed_training_step(module: L.LightningModule) -> L.LightningModule:
    """``module`` with the wall time of its training steps (its updates, not collection) summed in
    ``module.gradient_seconds``."""
    step = module.training_step
    module.gradient_seconds = 0.0

    def training_step(batch, batch_idx):
        start = time.perf_counter()
        out = step(batch, batch_idx)
        module.gradient_seconds += time.perf_counter() - start
        return out

    module.training_step = training_step
    return module


def overhead(name: str, make, update, updates: int, rounds: int = 3) -> None:
    """Median steps/s of ``Trainer.fit`` and of the plain loop over ``rounds`` alternating runs
    (a noisy neighbour slows both alike), after one short warm-up fit (first-use costs). For PPO
    with minibatches, also the median µs per gradient step of both (updates without collection)."""
    fit(make(), 3)
    fit_rates, plain_rates, step_ratios, same = [], [], [], True
    for _ in range(rounds):
        lightning_module, plain_module = timed_training_step(make()), make()
        fit_seconds = fit(lightning_module, updates)
        plain_seconds = plain_loop(plain_module, updates, update)
        same &= all(torch.equal(a, b) for a, b in zip(lightning_module.policy.state_dict().values(),
                                                       plain_module.policy.state_dict().values()))
        fit_rates.append(lightning_module.env_steps / fit_seconds)
        plain_rates.append(plain_module.env_steps / plain_seconds)
        step_ratios.append((lightning_module.gradient_seconds, plain_module.gradient_seconds))
    fit_rate, plain_rate = statistics.median(fit_rates), statistics.median(plain_rates)
    ratio = statistics.median(f / p for f, p in zip(fit_rates, plain_rates))
    print(f"{name:<26} {updates:>7} {lightning_module.env_steps:>9} {fit_rate:>10.0f} {plain_rate:>10.0f} "
          f"{ratio:>6.2f} {'yes' if same else 'NO'}")
    hp = lightning_module.hparams
    if getattr(hp, "minibatch_size", None):
        steps = updates * hp.update_epochs * -(-hp.n_steps * hp.num_envs // hp.minibatch_size)
        ours, plain = (statistics.median(s[i] for s in step_ratios) / steps * 1e6 for i in (0, 1))
        print(f"{'':<26} gradient step on {hp.minibatch_size} samples: Trainer.fit {ours:.0f} µs, plain loop "
              f"{plain:.0f} µs ({ours / plain:.2f}x; each update's whole time outside collection / its steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates-scale", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, lightning {L.__version__}, 1 thread\n")
    print(f"{'envs':>5} {'transitions/s':>14} {'µs/transition':>14} {'torch actor µs/transition':>26}")
    for num_envs in (1, 8, 32, 64, 512):
        rate, torch_rate = collector_throughput(num_envs), collector_throughput(num_envs, numpy_actor=False)
        print(f"{num_envs:>5} {rate:>14.0f} {1e6 / rate:>14.2f} {1e6 / torch_rate:>26.2f}")
    sync = collector_throughput(1, vectorization="sync")
    print(f"one env through a SyncVectorEnv (the path before SingleEnv): {sync:.0f} transitions/s, {1e6 / sync:.2f} µs")
    print()
    for balanced, episodes in ((False, "the untrained seed network's ~20-step"), (True, "a balancing policy's 500-step")):
        batches, bare, env_only = episode_throughput(balanced)
        print(f"one-env episode batches (the seed recipe's collection), {episodes} episodes: "
              f"{batches:.2f} µs per env step; the env's step and the same actor in a bare loop: {bare:.2f} µs; "
              f"the env's step alone: {env_only:.2f} µs")
    print(f"\n{'algorithm':<26} {'updates':>7} {'env steps':>9} {'fit st/s':>10} {'plain st/s':>10} {'ratio':>6} same weights")
    scale = args.updates_scale
    overhead("REINFORCE", lambda: Reinforce(seed=0), reinforce_update, int(300 * scale))
    overhead("PPO", lambda: model_from_config(str(ROOT / "configs/cartpole_ppo.yaml"), seed=0),
             ppo_update, int(100 * scale))
    overhead("PPO lunarlander_ppo.yaml", lambda: model_from_config(str(ROOT / "configs/lunarlander_ppo.yaml"), seed=0),
             ppo_update, int(4 * scale))


if __name__ == "__main__":
    main()
