"""The paths a Lightning user walks first: a plain Trainer with its callbacks and flags, the CLI
without a config, a run that ends on its budget, and what a checkpoint then holds."""

import math
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from helpers import quiet_trainer as trainer
from helpers import user_env
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from pg_lightning import A2C, PPO, Reinforce, RunCheckpoint
from pg_lightning.cli import main
from pg_lightning.errors import ConfigError
from pg_lightning.registry import model_from_config

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = {"Reinforce": Reinforce, "A2C": A2C, "PPO": PPO}




class PerUpdate(L.Callback):
    """What a callback sees after every update: the module's counters and the callback metrics."""

    def __init__(self):
        self.returns, self.env_steps, self.metrics = [], [], []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.returns.append(pl_module.return_last100)
        self.env_steps.append(pl_module.env_steps)
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def weights(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.policy.parameters()]


# ---- callbacks --------------------------------------------------------------------------------
def test_early_stopping_on_the_return_stops_ppo_at_the_first_update_that_reaches_it():
    module = model_from_config(str(ROOT / "configs/cartpole_ppo.yaml"), seed=0)
    early = EarlyStopping(monitor="train/return_last100", mode="max", stopping_threshold=150, patience=10**6)
    seen = PerUpdate()
    trainer(callbacks=[seen, early]).fit(module)
    crossed = [i for i, r in enumerate(seen.returns) if r is not None and r >= 150]
    assert crossed and len(seen.returns) == crossed[0] + 1  # stopped right there, not later
    assert module.env_steps < module.hparams.max_env_steps
    assert early.stopped_epoch == crossed[0]


def test_callback_metrics_hold_this_updates_values_and_loggers_keep_their_cadence(tmp_path):
    module = A2C(seed=0, num_envs=4, n_steps=16, max_env_steps=700)
    seen = PerUpdate()
    trainer(callbacks=[seen], logger=CSVLogger(tmp_path, name="run"), log_every_n_steps=5).fit(module)
    for steps, returns, metrics in zip(seen.env_steps, seen.returns, seen.metrics):
        assert metrics["train/env_steps"] == steps
        if returns is not None:
            assert metrics["train/return_last100"] == pytest.approx(returns)
        assert {"train/loss", "train/policy_loss", "train/value_loss", "train/entropy"} <= set(metrics)
    rows = (tmp_path / "run/version_0/metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    logged = [float(r.split(",")[header.index("train/env_steps")]) for r in rows[1:]]
    n = len(seen.env_steps)
    assert logged == [seen.env_steps[i] for i in range(n) if (i + 1) % 5 == 0 or i == n - 1]  # and the budget's end


def test_model_checkpoint_scores_belong_to_the_update_they_were_saved_at(tmp_path):
    module = Reinforce(seed=1)
    seen = PerUpdate()
    best = ModelCheckpoint(dirpath=tmp_path, monitor="train/return_last100", mode="max", save_top_k=1,
                           every_n_epochs=1, save_on_train_epoch_end=True)
    trainer(max_epochs=30, callbacks=[seen, best], enable_checkpointing=True).fit(module)
    top = max(range(30), key=lambda i: (seen.returns[i], -i))
    assert float(best.best_model_score) == pytest.approx(seen.returns[top])
    saved = torch.load(best.best_model_path, weights_only=True)["pg_lightning"]
    assert saved["env_steps"] == seen.env_steps[top]
    window = saved["processes"][0]["collector"]["recent_returns"]
    assert sum(window) / len(window) == pytest.approx(float(best.best_model_score))


def test_learning_rate_monitor_logs_the_lr_each_update_trains_with(tmp_path):
    module = PPO(seed=0, n_steps=32, anneal_lr=True, max_env_steps=600, lr=1e-3)
    seen = PerUpdate()
    trainer(callbacks=[seen, LearningRateMonitor("step")], logger=CSVLogger(tmp_path, name="run"),
            log_every_n_steps=1).fit(module)
    rows = (tmp_path / "run/version_0/metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    column = header.index("lr-Adam")
    logged = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    before = [0, *seen.env_steps[:-1]]  # env steps done before each update
    assert logged == pytest.approx([1e-3 * (1 - s / 600) for s in before])
    assert len(set(logged)) == len(logged) > 2


def test_the_lr_schedule_is_a_checkpointed_scheduler(tmp_path):
    module = Reinforce(seed=0, anneal_lr=True, max_env_steps=400)
    fit = trainer(max_epochs=3)
    fit.fit(module)
    fit.save_checkpoint(tmp_path / "a.ckpt")
    saved = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert len(saved["lr_schedulers"]) == 1
    assert saved["lr_schedulers"][0]["_last_lr"] == [pytest.approx(1e-2 * (1 - module.env_steps / 400))]


# ---- Trainer flags ----------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["32", "16-mixed", "bf16-mixed", "64-true"])
@pytest.mark.parametrize("cls", [Reinforce, PPO])
def test_precisions_that_train(precision, cls):
    module = cls(seed=0, **({"n_steps": 32} if cls is PPO else {}))
    before = weights(module)
    trainer(max_epochs=3, precision=precision).fit(module)
    after = weights(module)
    assert module.env_steps > 0 and module.skipped_updates == 0
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b.to(a.dtype)) for a, b in zip(after, before))


REFUSED = [
    (dict(precision="bf16-true"), Reinforce, "precision='bf16-true'"),
    (dict(precision="16-true"), PPO, "precision='16-true'"),
    (dict(accumulate_grad_batches=4), Reinforce, "accumulate_grad_batches=4 is not supported"),
    (dict(accumulate_grad_batches=2), PPO, "Automatic gradient accumulation is not supported for manual"),
    (dict(gradient_clip_val=0.5), PPO, "Automatic gradient clipping is not supported for manual"),
    (dict(val_check_interval=0.5), Reinforce, "val_check_interval=0.5 splits an epoch"),
    (dict(val_check_interval=3), Reinforce, "pass check_val_every_n_epoch=None"),
    (dict(limit_train_batches=0.5), A2C, "limit_train_batches=0.5"),
    (dict(check_val_every_n_epoch=3), "eval_every", "eval_every=2 and the Trainer's check_val_every_n_epoch"),
]


@pytest.mark.parametrize("flags, cls, message", REFUSED, ids=[str(f) for f, _, _ in REFUSED])
def test_flags_that_cannot_work_are_refused_before_training(flags, cls, message):
    module = Reinforce(seed=0, eval_every=2) if cls == "eval_every" else cls(seed=0)
    started = PerUpdate()
    with pytest.raises((ConfigError, MisconfigurationException), match=re.escape(message)):
        trainer(max_epochs=2, callbacks=[started], **flags).fit(module)
    assert module.env_steps == 0 and not started.env_steps


def test_gradient_clip_val_clips_automatic_updates():
    clipped, free = Reinforce(seed=0), Reinforce(seed=0)
    trainer(max_epochs=1, gradient_clip_val=1e-4).fit(clipped)
    trainer(max_epochs=1).fit(free)
    start = weights(Reinforce(seed=0))
    step = lambda m: math.sqrt(sum(float((a - b).pow(2).sum()) for a, b in zip(weights(m), start)))  # noqa: E731
    assert 0 < step(clipped) < step(free)


@pytest.mark.parametrize(
    "flags, module_kwargs, expected",
    [
        (dict(check_val_every_n_epoch=2), {}, [1, 3, 5]),
        (dict(val_check_interval=3, check_val_every_n_epoch=None), {}, [2, 5]),
        ({}, dict(eval_every=3), [2, 5]),
        ({}, {}, []),
    ],
    ids=["check_val_every_n_epoch", "val_check_interval", "eval_every", "default: none during fit"],
)
def test_evaluation_cadence(flags, module_kwargs, expected):
    evaluated = []

    class Count(L.Callback):
        def on_validation_batch_end(self, trainer, *args):
            evaluated.append(trainer.current_epoch)

    module = Reinforce(seed=0, eval_episodes=1, **module_kwargs)
    before = list(warnings.filters)
    trainer(max_epochs=6, callbacks=[Count()], **flags).fit(module)
    assert evaluated == expected
    assert warnings.filters == before  # the fit's silenced Lightning warning does not outlive it


@pytest.mark.parametrize(
    "flags, updates",
    [(dict(max_epochs=3), 3), (dict(max_steps=4), 4), (dict(limit_train_batches=1, max_epochs=2), 2)],
    ids=["max_epochs", "max_steps", "limit_train_batches"],
)
def test_limits_count_updates(flags, updates):
    seen = PerUpdate()
    trainer(callbacks=[seen], **{"max_epochs": -1, **flags}).fit(Reinforce(seed=0))
    assert len(seen.env_steps) == updates


def test_max_time_ends_a_run_and_its_last_checkpoint_holds_the_end(tmp_path):
    module = Reinforce(seed=0)
    fit = trainer(max_time={"seconds": 2}, callbacks=[RunCheckpoint(dirpath=tmp_path, save_last=True, every_n_epochs=10**6)],
                  enable_checkpointing=True)
    fit.fit(module)
    assert module.env_steps > 0
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["pg_lightning"]["env_steps"] == module.env_steps


def test_deterministic_runs_are_identical():
    a, b = PPO(seed=3, n_steps=32), PPO(seed=3, n_steps=32)
    for module in (a, b):
        trainer(max_epochs=3, deterministic=True).fit(module)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))


# ---- the CLI without a config -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_cli_model_without_config_prints_the_classes_own_defaults(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--model", f"pg_lightning.{name}", "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in ALGORITHMS[name]().hparams.items()}
    assert printed == expected


def test_cli_model_help_shows_the_classes_own_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--model.help", "PPO"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Adam learning rate. (type: float, default: 0.00025)" in text
    assert "parallel envs per process. (type: int, default: 4)" in text


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_cli_model_without_config_trains_and_saves_its_final_update(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["--model", f"pg_lightning.{name}", "--model.max_env_steps", "3000", "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", "ckpts"])
    assert type(cli.model).__name__ == name and cli.model.env_steps >= 3000
    saved = torch.load(tmp_path / "ckpts/last.ckpt", weights_only=True)
    assert saved["pg_lightning"]["env_steps"] == cli.model.env_steps  # the run's end, not update 25
    assert saved["global_step"] == cli.trainer.global_step


def test_validate_from_a_checkpoint_alone_builds_the_model_it_describes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = PPO(seed=0, n_steps=16, hidden_sizes=(32,), eval_episodes=2)
    fit = trainer(max_epochs=2)
    fit.fit(module)
    fit.save_checkpoint(tmp_path / "ppo.ckpt")
    cli = main(["validate", "--ckpt_path", str(tmp_path / "ppo.ckpt"), "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false"])
    rebuilt = {k: list(v) if isinstance(v, tuple) else v for k, v in cli.model.hparams.items() if not k.startswith("_")}
    assert isinstance(cli.model, PPO) and rebuilt == {**module.hparams, "hidden_sizes": [32]}
    assert "val/episode_return" in cli.trainer.callback_metrics


# ---- the end of a run -------------------------------------------------------------------------
def train_process(tmp_path, *args):
    env = user_env(tmp_path, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "--trainer.logger", "false", "--trainer.enable_progress_bar",
         "false", "--checkpoint.dirpath", "ckpts", "--trainer.log_every_n_steps", "1", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 1)], ids=["SIGTERM", "Ctrl-C"])
def test_an_interrupted_run_leaves_its_final_update_in_last_ckpt(tmp_path, sig, code):
    process = train_process(tmp_path, "--model.max_env_steps", "100000000", "--solved.threshold", "1000000")
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "ckpts/last.ckpt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # the periodic save (every 25 updates) shows training is under way
        first = torch.load(tmp_path / "ckpts/last.ckpt", weights_only=True)["global_step"]
        time.sleep(1.0)
        process.send_signal(sig)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, output[-2000:]
    saved = torch.load(tmp_path / "ckpts/last.ckpt", weights_only=True)
    assert saved["pg_lightning"]["env_steps"] > 0 and saved["global_step"] > first  # the run's end, not a periodic save


# ---- data and statistics ----------------------------------------------------------------------
def test_statistics_a_callback_saves_are_those_of_the_weights_it_saves():
    module = A2C(seed=0, num_envs=2, n_steps=8, normalize_observations=True, normalize_rewards=True)
    counts, transitions = [], []

    class AtBatchEnd(L.Callback):  # where ModelCheckpoint(every_n_train_steps=...) saves
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            counts.append(int(pl_module.policy.obs_rms.count))
            transitions.append(batch.num_steps)

    trainer(max_epochs=4, callbacks=[AtBatchEnd()]).fit(module)
    assert counts == [sum(transitions[: i + 1]) for i in range(4)]  # this batch included, not one behind


@pytest.mark.parametrize("cls", [A2C, PPO])
def test_a_rollout_of_autoreset_steps_only_is_no_update_and_no_skipped_update(cls):
    module = cls(env_id="PGLTest/Counter-v0", env_kwargs={"max_length": 1}, num_envs=1, n_steps=1, seed=0,
                 **({"minibatch_size": None} if cls is PPO else {}))
    seen = PerUpdate()
    trainer(max_epochs=6, callbacks=[seen]).fit(module)
    assert module.skipped_updates == 0
    assert seen.env_steps == [1, 1, 2, 2, 3, 3]  # every other rollout is an autoreset step alone


@pytest.mark.parametrize("name, updates", [("A2C", 3), ("PPO", 6)])
def test_cli_optimizer_and_lr_scheduler_replace_the_modules_own(name, updates, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["--model", f"pg_lightning.{name}", "--model.n_steps", "32", "--model.max_env_steps", "700",
                "--optimizer", "SGD", "--optimizer.lr", "0.1", "--lr_scheduler", "StepLR",
                "--lr_scheduler.step_size", "1", "--lr_scheduler.gamma", "0.5", "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false"])
    optimizer = cli.model.optimizers().optimizer
    assert isinstance(optimizer, torch.optim.SGD) and cli.trainer.current_epoch == updates
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**updates)  # stepped once per update
    assert not list(tmp_path.rglob("*.ckpt"))  # enable_checkpointing false: the checkpoint group saves nothing


def test_cli_refuses_two_learning_rate_schedules(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["--model.anneal_lr", "true", "--model.max_env_steps", "700", "--lr_scheduler", "StepLR",
              "--lr_scheduler.step_size", "1", "--trainer.logger", "false"])
    assert exit_.value.code == 2
    assert "error: anneal_lr and --lr_scheduler both set the learning rate" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*"))  # refused before anything was written


def test_importing_the_package_changes_no_global_state():
    code = ("import warnings, torch, lightning, gymnasium, jsonargparse; "  # what the dependencies do is theirs
            "filters = list(warnings.filters); threads = torch.get_num_threads(); "
            "import pg_lightning, pg_lightning.modules, pg_lightning.cli, pg_lightning.export; "
            "assert warnings.filters == filters and torch.get_num_threads() == threads, 'changed'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
