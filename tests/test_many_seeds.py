"""Many seeds in one process (``num_seeds``): seed k of a batch is the one-seed run with seed + k,
nothing couples two seeds, a stopped seed stops changing, and the run reports every seed."""

from __future__ import annotations

import json
import os

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from pg_lightning import A2C, PPO, Reinforce, StopWhenSolved, plot, seed_checkpoints, seeds
from pg_lightning.cli import main as cli_main
from pg_lightning.collection_worker import CollectionWorker, RemoteCollector
from pg_lightning.errors import ConfigError, TrainingError
from pg_lightning.evaluation import evaluate
from pg_lightning.export import main as export_main
from pg_lightning.loggers import run_folder
from pg_lightning.play import main as play_main
from pg_lightning.registry import load_module, load_policy
from pg_lightning.seed_stack import SeedStack
from pg_lightning.trainer_checks import check_trainer

SETUPS = {  # discrete and continuous actions, episode batches and rollouts, normalisation and schedules
    "Reinforce": (Reinforce, {}),
    "A2C": (A2C, {"n_steps": 8, "num_envs": 2}),
    "PPO": (PPO, {"n_steps": 16, "num_envs": 2, "minibatch_size": 8, "update_epochs": 2}),
    "PPO-Gaussian": (PPO, {"env_id": "Pendulum-v1", "n_steps": 16, "num_envs": 2, "minibatch_size": 16,
                           "normalize_observations": True, "normalize_rewards": True, "anneal_lr": True,
                           "anneal_clip_range": True, "max_env_steps": 10_000}),
    "A2C-Dict-own-network": (A2C, {"env_id": "user_envs:UserEnvs/Signal-v0", "n_steps": 8, "num_envs": 2,
                                   "network": {"class_path": "user_envs.TinyTrunk", "init_args": {"width": 8}}}),
}


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """A fit without a logger writes its run folder's files (summary.json) to the working folder."""
    monkeypatch.chdir(tmp_path)


def fit(module: L.LightningModule, updates: int | None = None, **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(max_epochs=updates or -1, logger=trainer_kwargs.pop("logger", False),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        **trainer_kwargs)
    trainer.fit(module)
    return trainer


def weights(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in policy.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    """Equal to float tolerance: the stacked seeds' matrix products and Adam round differently."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_seed_k_of_a_batch_makes_the_updates_of_the_one_seed_run_with_seed_plus_k(name):
    cls, kwargs = SETUPS[name]
    many = cls(seed=5, num_seeds=3, **kwargs)
    fit(many, 3)
    for k, agent in enumerate(many.agents):
        one = cls(seed=5 + k, **kwargs)
        fit(one, 3)
        assert agent.seed == 5 + k
        assert_same(weights(agent.policy), weights(one.policy))
        assert agent.statistics.env_steps == one.env_steps and agent.statistics.episodes == one.episodes
    assert many.env_steps == sum(a.statistics.env_steps for a in many.agents)
    assert not torch.equal(*(next(iter(a.policy.parameters())) for a in many.agents[:2]))  # the seeds differ


class StepsPerUpdate(L.Callback):
    """Each seed's gradient steps in each update (PPO's ``updates`` metric)."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps.append([int(agent.statistics.latest["train/updates"]) for agent in module.agents])


def test_each_seed_stops_its_ppo_passes_on_its_own_kl():
    """target_kl acts per seed (a mask, not a break): each seed takes the gradient steps its
    one-seed run takes in every update, though the seeds stop at different passes."""
    kwargs = {"n_steps": 16, "num_envs": 2, "minibatch_size": 8, "update_epochs": 6, "target_kl": 0.03, "lr": 0.01}
    many, counted = PPO(seed=5, num_seeds=3, **kwargs), StepsPerUpdate()
    fit(many, 3, callbacks=[counted])
    assert len({tuple(update) for update in counted.steps}) > 1 and any(len(set(u)) > 1 for u in counted.steps)
    for k, agent in enumerate(many.agents):
        one, alone = PPO(seed=5 + k, **kwargs), StepsPerUpdate()
        fit(one, 3, callbacks=[alone])
        assert [update[k] for update in counted.steps] == [update[0] for update in alone.steps]
        assert_same(weights(agent.policy), weights(one.policy), atol=1e-3)  # lr 0.01, up to 72 steps: drift


POISONED = {  # one gradient step per update, so 3 updates skip 3 steps (fewer than max_skipped_updates)
    "A2C": (A2C, {"n_steps": 8, "num_envs": 2}),
    "PPO": (PPO, {"n_steps": 8, "num_envs": 2, "minibatch_size": None, "update_epochs": 1}),
}


@pytest.mark.parametrize("name", sorted(POISONED))
def test_a_nan_in_one_seeds_loss_changes_no_other_seed(name, monkeypatch):
    """Seeds trained as one table (SeedStack): seed 1's log-probabilities are NaN, so are its loss
    and gradients; seed 0 makes exactly its clean updates and seed 1 skips every step."""
    cls, kwargs = POISONED[name]
    clean = cls(seed=5, num_seeds=2, **kwargs)
    fit(clean, 3)
    evaluate = SeedStack.evaluate

    def nan_for_the_second_seed(stack, obs, actions, rows=None):
        log_probs, entropy, values = evaluate(stack, obs, actions, rows)
        seeds = torch.arange(stack.num_seeds) if rows is None else rows
        poison = torch.where(seeds == 1, float("nan"), 1.0).unsqueeze(1)  # NaN through the graph, not around it
        return log_probs * poison, entropy, values

    monkeypatch.setattr(SeedStack, "evaluate", nan_for_the_second_seed)
    poisoned = cls(seed=5, num_seeds=2, **kwargs)
    fit(poisoned, 3)
    assert poisoned.stack is not None
    assert_same(weights(poisoned.agents[0].policy), weights(clean.agents[0].policy))
    assert poisoned.agents[1].statistics.skipped_updates == 3 and poisoned.agents[0].statistics.skipped_updates == 0
    assert_same(weights(poisoned.agents[1].policy), weights(cls(seed=6, **kwargs).policy))  # never stepped


def test_a_nan_in_one_seeds_loss_changes_no_other_seed_of_a_user_network(monkeypatch):
    """Seeds of a user network are updated one after another (no SeedStack): the same isolation."""
    cls, kwargs = SETUPS["A2C-Dict-own-network"]
    clean = cls(seed=5, num_seeds=2, **kwargs)
    fit(clean, 3)
    poisoned = cls(seed=5, num_seeds=2, **kwargs)
    compute = poisoned.compute_losses

    def nan_for_the_second_seed(batch, agent):
        terms = compute(batch, agent)
        if agent is poisoned.agents[1]:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(poisoned, "compute_losses", nan_for_the_second_seed)
    fit(poisoned, 3)
    assert poisoned.stack is None
    assert_same(weights(poisoned.agents[0].policy), weights(clean.agents[0].policy))
    assert poisoned.agents[1].statistics.skipped_updates == 3 and poisoned.agents[0].statistics.skipped_updates == 0
    assert_same(weights(poisoned.agents[1].policy), weights(cls(seed=6, **kwargs).policy))


def test_a_seed_at_its_budget_stops_changing_while_the_others_go_on():
    """Episode batches differ in length per seed, so the seeds reach the budget at different
    updates: each ends exactly where its one-seed run with the same budget ends."""
    many = Reinforce(seed=5, num_seeds=3, max_env_steps=1500)
    trainer = fit(many)
    assert [a.stopped for a in many.agents] == ["budget"] * 3 and trainer.should_stop
    for k, agent in enumerate(many.agents):
        one = Reinforce(seed=5 + k, max_env_steps=1500)
        fit(one)
        assert agent.statistics.env_steps == one.env_steps >= 1500
        assert_same(weights(agent.policy), weights(one.policy), atol=1e-2)  # ~70 updates: float differences grow
    assert len({a.statistics.env_steps for a in many.agents}) > 1  # they did stop at different points


def resume(module: L.LightningModule, path, updates: int) -> L.LightningModule:
    L.Trainer(max_epochs=updates, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(module, ckpt_path=path)
    return module


def test_a_many_seeds_checkpoint_resumes_exactly(tmp_path):
    """Episode batches resume exactly (each env restarts from its saved generator, as after any batch)."""
    def make() -> Reinforce:
        return Reinforce(seed=5, num_seeds=2, normalize_rewards=True)

    straight = make()
    fit(straight, 6)
    trainer = fit(make(), 3)
    trainer.save_checkpoint(tmp_path / "half.ckpt")
    resumed = resume(make(), tmp_path / "half.ckpt", 6)
    for a, b in zip(straight.agents, resumed.agents, strict=True):
        assert_same(weights(a.policy), weights(b.policy))
        assert (a.statistics.env_steps, a.statistics.episodes) == (b.statistics.env_steps, b.statistics.episodes)
        assert a.collector is None and b.statistics.return_last100 == a.statistics.return_last100


def test_each_resumed_seed_is_its_one_seed_run_resumed(tmp_path):
    """Rollouts restart the episodes in progress when resumed; a resumed seed does what its
    one-seed run does when resumed from the same point."""
    kwargs = {"n_steps": 16, "num_envs": 2, "minibatch_size": 8}
    fit(PPO(seed=5, num_seeds=2, **kwargs), 2).save_checkpoint(tmp_path / "two.ckpt")
    many = resume(PPO(seed=5, num_seeds=2, **kwargs), tmp_path / "two.ckpt", 4)
    for k, agent in enumerate(many.agents):
        fit(PPO(seed=5 + k, **kwargs), 2).save_checkpoint(tmp_path / "one.ckpt")
        one = resume(PPO(seed=5 + k, **kwargs), tmp_path / "one.ckpt", 4)
        assert_same(weights(agent.policy), weights(one.policy), atol=1e-4)  # 64 Adam steps of float differences


def test_one_seed_is_extracted_as_an_ordinary_checkpoint_that_loads_and_resumes(tmp_path):
    many = PPO(seed=5, n_steps=16, num_envs=2, minibatch_size=8, num_seeds=3)
    trainer = fit(many, 2)
    trainer.save_checkpoint(tmp_path / "three.ckpt")
    checkpoint = torch.load(tmp_path / "three.ckpt", weights_only=True)
    torch.save(seed_checkpoints.extract_seed(checkpoint, 2), tmp_path / "seed7.ckpt")
    loaded = load_module(tmp_path / "seed7.ckpt")
    assert loaded.hparams.seed == 7 and loaded.num_seeds == 1
    assert_same(weights(loaded.policy), weights(many.agents[2].policy))
    # resumed, it trains on as the one-seed run with seed 7 resumed from its own checkpoint
    extracted = resume(PPO(seed=7, n_steps=16, num_envs=2, minibatch_size=8), tmp_path / "seed7.ckpt", 4)
    fit(PPO(seed=7, n_steps=16, num_envs=2, minibatch_size=8), 2).save_checkpoint(tmp_path / "own.ckpt")
    own = resume(PPO(seed=7, n_steps=16, num_envs=2, minibatch_size=8), tmp_path / "own.ckpt", 4)
    assert_same(weights(extracted.policy), weights(own.policy), atol=1e-4)


def test_every_seed_has_its_own_curves_and_the_run_a_summary(tmp_path):
    logger = CSVLogger(tmp_path, name="run", version="")
    many = Reinforce(seed=5, num_seeds=2, max_env_steps=1200)
    fit(many, logger=logger, log_every_n_steps=1)
    for k, agent in enumerate(many.agents):
        rows = (tmp_path / "run" / f"seed{5 + k}" / "metrics.csv").read_text().splitlines()
        header = rows[0].split(",")
        last = dict(zip(header, rows[-1].split(",")))
        assert int(float(last["train/env_steps"])) == agent.statistics.env_steps
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [5, 6]
    assert [s["env_steps"] for s in summary["seeds"]] == [a.statistics.env_steps for a in many.agents]
    assert summary["aggregate"]["num_seeds"] == 2
    # the plot reads the seeds' curves, not the run's aggregate beside them
    assert (tmp_path / "run" / "metrics.csv").exists()
    assert [p.parent.name for p in plot.find_metrics(tmp_path / "run")] == ["seed5", "seed6"]


def test_the_command_line_trains_many_seeds_and_prints_their_aggregate(capsys):
    cli = cli_main(["--model.num_seeds", "3", "--model.max_env_steps", "1000", "--trainer.logger",
                    "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "logs",
                    "--trainer.enable_progress_bar", "false"])
    done = capsys.readouterr().out.strip().splitlines()[-1]
    assert done.startswith(f"Done: {cli.model.env_steps:,} env steps") and "(seeds 0-2); 3 seeds: 0/3 solved" in done
    summary = json.loads((run_folder(cli.trainer) / "summary.json").read_text())
    assert [s["env_steps"] >= 1000 for s in summary["seeds"]] == [True] * 3


def test_consecutive_seeds_train_in_one_process():
    assert seeds.runs([0, 1, 2, 7, 9, 10]) == [(0, 3), (7, 1), (9, 2)]
    assert seeds.seed_args("cartpole_ppo", 4, None, 3)[:8] == [
        "fit", "--config", "cartpole_ppo", "--model.seed", "4", "--model.num_seeds", "3", "--trainer.logger.group"]


def test_ddp_with_many_seeds_is_refused_in_one_line():
    class TwoProcesses:
        world_size = 2

    with pytest.raises(ConfigError, match="num_seeds=2 with 2 processes: DDP averages every gradient"):
        check_trainer(TwoProcesses(), Reinforce(num_seeds=2))


def test_play_export_and_load_take_a_seed_index(capsys):
    many = Reinforce(seed=5, num_seeds=3)
    fit(many, 2).save_checkpoint("three.ckpt")
    for k, agent in enumerate(many.agents):
        assert_same(weights(load_policy("three.ckpt", seed_index=k)), weights(agent.policy))
    assert play_main(["three.ckpt", "--seed-index", "2", "--episodes", "2"]) == 0
    expected = evaluate(many.agents[2].policy, "CartPole-v1", 2, seed=0)["returns"]  # play's episode k: seed k
    printed = capsys.readouterr().out
    assert [f"episode {k}: return {r:g}" in printed for k, r in enumerate(expected)] == [True, True]
    assert export_main(["three.ckpt", "--seed-index", "1", "--output", "seed6.pt"]) == 0
    observations = torch.randn(64, 4)
    assert torch.equal(torch.jit.load("seed6.pt")(observations), many.agents[1].policy(observations))
    with pytest.raises(SystemExit) as stop:
        export_main(["three.ckpt", "--seed-index", "3", "--output", "x.pt"])
    assert stop.value.code == 2 and "seed index 3 is out of range" in capsys.readouterr().err


class StoppedWeights(L.Callback):
    """Each seed's weights at the end of the update in which it stopped."""

    def __init__(self):
        self.weights = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        for agent in module.agents:
            if agent.stopped and agent.seed not in self.weights:
                self.weights[agent.seed] = weights(agent.policy)


def test_stop_when_solved_stops_each_seed_when_it_is_solved():
    """Each seed stops at its own solved point and changes no more while the others go on; its
    one-seed run with the same callback solves it too (float differences make the points differ)."""
    many, stopped = Reinforce(seed=5, num_seeds=3, max_env_steps=30_000), StoppedWeights()
    fit(many, callbacks=[StopWhenSolved(threshold=40, min_episodes=10), stopped])
    assert [a.stopped for a in many.agents] == ["solved"] * 3
    assert len({a.solved_at for a in many.agents}) > 1  # they stopped at different points
    for k, agent in enumerate(many.agents):
        assert agent.solved_at == agent.statistics.env_steps and agent.statistics.return_last100 >= 40
        assert_same(weights(agent.policy), stopped.weights[agent.seed], atol=0)
        solved = StopWhenSolved(threshold=40, min_episodes=10)
        fit(Reinforce(seed=5 + k, max_env_steps=30_000), callbacks=[solved])
        assert solved.solved_at is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_many_seeds_on_a_gpu_make_the_one_seed_runs_updates():
    kwargs = {"n_steps": 16, "num_envs": 2, "minibatch_size": 8}
    many = PPO(seed=5, num_seeds=2, **kwargs)
    fit(many, 3, accelerator="gpu", devices=1)
    for k, agent in enumerate(many.agents):
        one = PPO(seed=5 + k, **kwargs)
        fit(one, 3, accelerator="gpu", devices=1)
        for a, b in zip(agent.policy.state_dict().values(), one.policy.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_a_many_seeds_fit_gives_every_seed_its_own_wandb_run(tmp_path):
    from test_seed_loggers import written_run

    from pg_lightning.loggers import WandbLogger

    logger = WandbLogger(project="many", save_dir=str(tmp_path), name="cartpole")
    many = Reinforce(seed=5, num_seeds=2, max_env_steps=1000)
    try:
        fit(many, logger=logger, log_every_n_steps=1)
        trainer_id = logger.experiment.id
    finally:
        logger.experiment.finish()
    files = {f.parent.name.rpartition("-")[2]: f for f in (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")}
    assert set(files) == {trainer_id, "seed5", "seed6"}  # the seeds' aggregate, and one run per seed
    for agent in many.agents:
        run = written_run(files[f"seed{agent.seed}"])
        assert (run["run"].display_name, run["run"].run_group) == (f"cartpole-seed{agent.seed}", "cartpole")
        last = run["history"][-1]
        assert last["train/env_steps"] == agent.statistics.env_steps
        assert last["train/return_last100"] == pytest.approx(agent.statistics.return_last100)
        assert run["metrics"]["train/return_last100"] == "train/env_steps"  # the x-axis of a one-seed run


@pytest.mark.parametrize("name", ["PPO", "Reinforce"])
def test_a_collection_worker_plays_half_the_seeds_exactly_as_this_process_would(name, monkeypatch):
    """(REINFORCE does not use one by default: its batches are single short episodes.)"""
    """On more than one core the second half of the seeds is played by a forked worker process:
    the same batches, so the same weights, counters and windows as playing them all here."""
    cls, kwargs = SETUPS[name]
    shared = cls(seed=5, num_seeds=4, **kwargs)
    workers = []
    start = CollectionWorker.__init__

    def recorded(worker, seeds):
        workers.append(sorted(seeds))
        start(worker, seeds)

    monkeypatch.setattr(CollectionWorker, "__init__", recorded)
    monkeypatch.setattr("pg_lightning.modules.seed_table.worker_pays", lambda collectors: True)
    monkeypatch.setattr(cls, "shares_collection", True)
    fit(shared, 4)
    assert workers == [[2, 3]] and shared.collection_worker is None  # forked once, ended with the fit
    monkeypatch.setattr(cls, "shares_collection", False)
    alone = cls(seed=5, num_seeds=4, **kwargs)
    fit(alone, 4)
    for a, b in zip(shared.agents, alone.agents, strict=True):
        assert_same(weights(a.policy), weights(b.policy), atol=0)
        assert (a.statistics.env_steps, a.statistics.episodes, a.statistics.return_last100) == (
            b.statistics.env_steps, b.statistics.episodes, b.statistics.return_last100)
        assert a.collector_state == b.collector_state  # taken from the worker at the end of the fit


def test_only_rollouts_share_their_collection_by_default():
    assert PPO.shares_collection and A2C.shares_collection and not Reinforce.shares_collection


def test_an_env_error_in_the_collection_worker_is_raised_in_this_process(monkeypatch):
    monkeypatch.setattr("pg_lightning.modules.seed_table.worker_pays", lambda collectors: True)
    module = PPO(env_id="user_envs:UserEnvs/Signal-v0", seed=5, num_seeds=2, n_steps=8, num_envs=2)
    module.train_dataloader()
    try:
        remote = module.agents[1].collector
        assert isinstance(remote, RemoteCollector)
        remote.worker.send("collect", 1, "rollout", {}, 1)  # no weights: the worker's load fails
        with pytest.raises(RuntimeError, match="Missing key"):
            remote.finish()
        assert remote.rollout(module.agents[1].policy, 3).actions.shape[:2] == (3, 2)  # it serves on
    finally:
        module.teardown("fit")  # takes the seeds' states, then ends the worker
    assert not remote.worker.process.is_alive() and module.agents[1].collector_state["seed"] == 6


def test_an_env_failing_in_the_worker_during_a_fit_ends_the_fit_with_its_error_and_the_worker(monkeypatch):
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    here, step = os.getpid(), CartPoleEnv.step

    def fails_in_the_worker(env, action):
        if os.getpid() != here:
            raise RuntimeError("boom")
        return step(env, action)

    monkeypatch.setattr(CartPoleEnv, "step", fails_in_the_worker)
    monkeypatch.setattr("pg_lightning.modules.seed_table.worker_pays", lambda collectors: True)
    module = PPO(seed=5, num_seeds=3, n_steps=8, num_envs=1, vectorization="sync")
    with pytest.raises(TrainingError, match="raised in step\\(\\): RuntimeError: boom"):
        fit(module, 3)
    worker = module.collection_worker
    try:  # the round's other batch was dropped: the worker answers the next request with its own reply
        assert worker.unanswered == 0 and module.agents[2].collector.state_dict()["seed"] == 7
        module.end_collection()
        assert worker.process.is_alive()  # seeds' collectors are still in it (as after validate's teardown)
    finally:
        module.teardown("fit")
    assert not worker.process.is_alive() and module.collection_worker is None
