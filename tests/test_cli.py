"""train.py end to end: offline W&B by default, YAML configs, one-line errors for bad settings."""

import glob
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import user_env, wandb_run

ROOT = Path(__file__).resolve().parents[1]


def train(tmp_path, *args, timeout=240):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=tmp_path, env=user_env(tmp_path), capture_output=True, text=True, timeout=timeout,
    )


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


def test_help_lists_the_options(tmp_path):
    result = train(tmp_path, "--help", timeout=120)
    assert result.returncode == 0
    for option in ("--trainer.accelerator", "--model", "--config", "--ckpt_path"):
        assert option in result.stdout


def test_resuming_keeps_the_checkpoints_network_and_refuses_another_in_one_line(tmp_path):
    first = train(tmp_path, "--model.max_env_steps", "300", "--trainer.logger", "false",
                  "--checkpoint.dirpath", "ckpts", "--trainer.enable_progress_bar", "false")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = train(tmp_path, "--ckpt_path", "ckpts/last.ckpt", "--model.hidden_sizes", "[64]",
                    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", timeout=120)
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert "error: --model.hidden_sizes [64] differs from the checkpoint's [128]" in resumed.stderr
    assert "Traceback" not in resumed.stderr


@pytest.mark.parametrize("flag", [["-c", "{cfg}"], ["-c={cfg}"], ["--config={cfg}"], ["--config", "{cfg}"]],
                         ids=["-c", "-c=", "--config=", "--config"])
def test_a_config_file_given_on_resume_wins_over_the_checkpoint_whatever_its_flag(tmp_path, monkeypatch, flag):
    """LightningCLI puts a checkpoint's hyper-parameters over the model config; what the user's
    config file sets (``-c`` is ``--config``'s short flag) still wins, as ``--model.X`` does."""
    from pg_lightning.cli import main

    monkeypatch.chdir(tmp_path)
    quiet = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--checkpoint.dirpath", "ckpts"]
    first = main(["--model.max_env_steps", "300", *quiet])
    (tmp_path / "longer.yaml").write_text("model:\n  class_path: pg_lightning.Reinforce\n  init_args:\n    max_env_steps: 900\n")
    args = [a.format(cfg=tmp_path / "longer.yaml") for a in flag]
    resumed = main([*args, "--ckpt_path", "ckpts/last.ckpt", *quiet])
    assert resumed.model.hparams.max_env_steps == 900
    assert resumed.model.env_steps >= 900 > first.model.env_steps
