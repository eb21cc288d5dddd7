"""The command-line path: train.py / pg-lightning with and without a config, --help and
--print_config, a default run end to end (offline W&B, checkpoints), the optimizer and scheduler
groups, validate from a checkpoint, and bad input: one line, a non-zero exit, nothing written.
Resuming from the command line: test_path_resume.py."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from helpers import quiet_trainer as trainer
from helpers import user_env, wandb_run

from pg_lightning import A2C, PPO, Reinforce
from pg_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = {"Reinforce": Reinforce, "A2C": A2C, "PPO": PPO}


def train(tmp_path, *args, timeout=240):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=tmp_path, env=user_env(tmp_path), capture_output=True, text=True, timeout=timeout,
    )


# ---- options and defaults --------------------------------------------------------------------
def test_help_lists_the_options(tmp_path):
    result = train(tmp_path, "--help", timeout=120)
    assert result.returncode == 0
    for option in ("--trainer.accelerator", "--model", "--config", "--ckpt_path"):
        assert option in result.stdout


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


# ---- runs -------------------------------------------------------------------------------------
def test_default_run_logs_to_offline_wandb_and_checkpoints(tmp_path):
    result = train(tmp_path, "--config", str(ROOT / "configs/cartpole_reinforce.yaml"),
                   "--model.max_env_steps", "1500", "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "W&B: offline (not logged in), run " in result.stdout + result.stderr
    runs = glob.glob(str(tmp_path / "runs/wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    history: dict[str, list] = {}
    for row in wandb_run(runs[0])["history"]:
        for key, value in row.items():
            history.setdefault(key, []).append(value)
    for key in ("train/episode_return", "train/return_last100", "train/loss", "train/entropy",
                "train/env_steps", "train/episodes", "train/steps_per_second"):
        assert history.get(key), key
    assert history["train/env_steps"] == sorted(history["train/env_steps"])
    assert history["train/env_steps"][-1] >= 1500
    assert glob.glob(str(tmp_path / "runs/pg_lightning/*/checkpoints/last.ckpt"))


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_cli_model_without_config_trains_and_saves_its_final_update(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["--model", f"pg_lightning.{name}", "--model.max_env_steps", "3000", "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", "ckpts"])
    assert type(cli.model).__name__ == name and cli.model.env_steps >= 3000
    saved = torch.load(tmp_path / "ckpts/last.ckpt", weights_only=True)
    assert saved["pg_lightning"]["env_steps"] == cli.model.env_steps  # the run's end, not update 25
    assert saved["global_step"] == cli.trainer.global_step


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


# ---- bad input: one line, non-zero exit, nothing left behind ---------------------------------
class BrokenCartPole(gym.Wrapper):
    """CartPole that raises, or returns NaN observations / rewards, from its 30th step on."""

    metadata = {"render_modes": []}  # gymnasium 1.0's make reads the entry point's class attribute

    def __init__(self, failure: str = "raise"):
        super().__init__(gym.make("CartPole-v1").unwrapped)
        self.failure, self.steps = failure, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps >= 30:
            if self.failure == "raise":
                raise RuntimeError("physics exploded")
            if self.failure == "nan_obs":
                obs = obs * np.nan
            if self.failure == "nan_reward":
                reward = float("nan")
        return obs, reward, False, truncated, info


for failure in ("raise", "nan_obs", "nan_reward"):
    gym.register(f"Broken-{failure}-v0", entry_point=BrokenCartPole, kwargs={"failure": failure},
                 max_episode_steps=200)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    for name, module in (("ppo", PPO(seed=0, n_steps=8)), ("pendulum", Reinforce("Pendulum-v1", seed=0))):
        fit = trainer(max_epochs=1)
        fit.fit(module)
        fit.save_checkpoint(folder / f"{name}.ckpt")
    (folder / "corrupt.ckpt").write_bytes(b"not a checkpoint at all")
    return folder


BAD_INPUTS = [
    (["--model.env_id", "NoSuchEnv-v0"], "unknown env_id 'NoSuchEnv-v0'"),
    (["--model.env_id", "no_such_package:Maze-v0"], "cannot import module 'no_such_package'"),
    (["--model.wrappers", "[gymnasium.wrappers.NoSuchWrapper]"], "wrappers: cannot import 'gymnasium.wrappers.NoSuchWrapper'"),
    (["--model.network", "{class_path: torch.nn.Linear, init_args: {in_features: 3, out_features: 8}}"],
     "the network failed on a batch of 2 observations"),
    (["--model.gamma", "1.5"], "gamma must be in [0, 1], got 1.5"),
    (["--model.gamma", "-0.5"], "gamma must be in [0, 1], got -0.5"),
    (["--model.lr", "0"], "lr must be > 0, got 0"),
    (["--model.lr", "-0.1"], "lr must be > 0, got -0.1"),
    (["--model.episodes_per_batch", "0"], "episodes_per_batch must be >= 1, got 0"),
    (["--model.hidden_sizes", "[0]"], "hidden_sizes must be positive integers, got [0]"),
    (["--model.activation", "sigmoidish"], "activation must be one of"),
    (["--model.reduction", "max"], "reduction"),
    (["--model.baseline", "median"], "baseline"),
    (["--model.num_envs", "0"], "num_envs must be >= 1, got 0"),
    (["--model.env_kwargs", '{"nonsense": 1}'], "bad env_kwargs"),
    (["--model.anneal_lr", "true", "--model.max_env_steps", "null"], "anneal_lr needs max_env_steps"),
    (["--model.max_env_steps", "0"], "max_env_steps must be > 0 or None, got 0"),
    (["--model.eval_episodes", "0"], "eval_episodes must be >= 1, got 0"),
    (["--model.lr", "fast"], "lr"),
    (["--model.no_such_option", "1"], "no_such_option"),
    (["--config", "missing.yaml"], "missing.yaml"),
    (["--model", "pg_lightning.PPO", "--model.clip_range", "0"], "clip_range must be > 0, got 0"),
    (["--ckpt_path", "missing.ckpt"], "--ckpt_path 'missing.ckpt' does not exist"),
    (["--ckpt_path", "{ckpts}/corrupt.ckpt"], "is not a PyTorch checkpoint"),
    (["--ckpt_path", "{ckpts}/ppo.ckpt"], "checkpoint is for PPO on CartPole-v1, this module is Reinforce on CartPole-v1"),
    (["--ckpt_path", "{ckpts}/pendulum.ckpt", "--model.env_id", "CartPole-v1"], "checkpoint is for Reinforce on Pendulum-v1"),
    (["--model.env_id", "Broken-raise-v0"], "env Broken-raise-v0 raised in step(): RuntimeError: physics exploded"),
    (["--model.env_id", "Broken-nan_obs-v0"], "env Broken-nan_obs-v0 returned non-finite observations"),
    (["--model.env_id", "Broken-nan_reward-v0"], "env Broken-nan_reward-v0 returned non-finite rewards"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a)[:40] for a, _ in BAD_INPUTS])
def test_bad_input_fails_with_one_clear_line(args, message, checkpoints, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{ckpts}", str(checkpoints)) for a in args]
    base = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "logs",
            "--trainer.enable_progress_bar", "false", "--model.max_env_steps", "3000"]
    if any(a.startswith("--model.max_env_steps") for a in args):
        base = base[:-2]
    with pytest.raises(SystemExit) as exit_:
        main([*args, *base])  # a config first: later arguments override it
    assert exit_.value.code not in (0, None)
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    # nothing half-written: no checkpoint, and the next good run in the same folder works
    assert not list(tmp_path.rglob("*.ckpt"))


def test_the_next_run_after_a_failed_one_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["--model.env_id", "Broken-raise-v0", "--trainer.logger", "false"])
    cli = main(["--model.max_env_steps", "500", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"])
    assert cli.model.env_steps >= 500


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.gamma", "1.5"], "error: gamma must be in [0, 1], got 1.5"),
        (["--model.env_id", "NoSuchEnv-v0"], "error: unknown env_id 'NoSuchEnv-v0'"),
        (["--model.hidden_sizes", "[0]"], "error: hidden_sizes must be positive integers, got [0]"),
    ],
)
def test_bad_settings_exit_nonzero_with_one_line_and_leave_nothing(tmp_path, args, message):
    result = train(tmp_path, *args, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "wandb").exists()
    assert not glob.glob(str(tmp_path / "runs/**/*.ckpt"), recursive=True)


def test_unknown_config_key_is_rejected(tmp_path):
    result = train(tmp_path, "--model.no_such_option", "3", timeout=120)
    assert result.returncode != 0 and "no_such_option" in result.stderr


@pytest.mark.parametrize(("num_seeds", "given", "expected"), [(1, None, 1), (3, None, "cores"), (3, 1, 1)])
def test_torch_threads_default_to_one_for_one_seed_and_every_core_for_many(num_seeds, given, expected, monkeypatch,
                                                                          tmp_path):
    """A stacked many-seeds step is compute-bound: it gets every core unless --torch_threads says otherwise."""
    monkeypatch.chdir(tmp_path)  # a many-seeds run writes its summary.json into the run folder
    monkeypatch.setattr(torch, "set_num_threads", lambda n: threads.append(n))
    threads = []
    args = ["fit", "--model", "Reinforce", "--model.num_seeds", str(num_seeds), "--trainer.max_epochs", "1",
            "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false"]
    main(args + ([f"--torch_threads={given}"] if given else []))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads[0] == (cores if expected == "cores" else expected)
