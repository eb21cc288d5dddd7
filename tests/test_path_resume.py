"""The path of a run that stops and goes on: what the end of a run leaves in last.ckpt (SIGTERM,
Ctrl-C), resuming in a Trainer and from the command line (the checkpoint's network kept,
a config file winning over its hyperparameters), and exact resume after SIGKILL at random moments."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import quiet_trainer as trainer
from helpers import user_env

from pg_lightning import Reinforce

ROOT = Path(__file__).resolve().parents[1]


# ---- the end of a run -------------------------------------------------------------------------
def train_process(tmp_path, *args):
    env = user_env(tmp_path, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "--trainer.logger", "false", "--trainer.enable_progress_bar",
         "false", "--checkpoint.dirpath", "ckpts", "--trainer.log_every_n_steps", "1", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Ctrl-C as at a terminal: a shell that runs the tests in the background hands its children
        # SIGINT ignored, and Python then never turns it into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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


# ---- resuming ---------------------------------------------------------------------------------
def test_interrupted_and_resumed_reinforce_equals_the_uninterrupted_run(tmp_path):
    straight = Reinforce(seed=5, episodes_per_batch=2)
    trainer(max_epochs=8).fit(straight)

    first = Reinforce(seed=5, episodes_per_batch=2)
    stopped = trainer(max_epochs=3)
    stopped.fit(first)
    stopped.save_checkpoint(tmp_path / "mid.ckpt")
    resumed = Reinforce(seed=5, episodes_per_batch=2)
    trainer(max_epochs=8).fit(resumed, ckpt_path=tmp_path / "mid.ckpt")

    assert (resumed.env_steps, resumed.episodes) == (straight.env_steps, straight.episodes)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.agents[0].collector_state["recent_returns"] == straight.agents[0].collector_state["recent_returns"]


def train(tmp_path, *args, timeout=240):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=tmp_path, env=user_env(tmp_path), capture_output=True, text=True, timeout=timeout,
    )


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


# ---- exact resume after SIGKILL ----------------------------------------------------------------
KILL_CONFIG = """
model:
  class_path: pg_lightning.Reinforce
  init_args: {{seed: 1, max_env_steps: 10000000}}
trainer:
  max_epochs: {epochs}
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
checkpoint: {{dirpath: {dirpath}, save_last: true, save_top_k: 1, every_n_epochs: 4, monitor: null}}
solved: {{threshold: 1000.0}}
"""


def start(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--config", str(config), *args],
                            cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_new_checkpoint(path: Path, after: float, process: subprocess.Popen, timeout=120.0) -> None:
    deadline = time.time() + timeout
    while not (path.exists() and path.stat().st_mtime > after):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.05)


def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    rng = random.Random(0)
    ckpts = tmp_path / "ckpt"
    config = tmp_path / "run.yaml"
    config.write_text(KILL_CONFIG.format(epochs=-1, dirpath=ckpts))
    last = ckpts / "last.ckpt"
    history = []
    for kill in range(3):
        args = ["--ckpt_path", str(last)] if kill else []
        began = time.time()
        process = start(config, *args)
        try:
            wait_for_new_checkpoint(last, began, process)
            time.sleep(rng.uniform(0.0, 1.5))  # anywhere: mid-collection, mid-update, mid-save
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        state = torch.load(last, weights_only=True)  # never half-written
        history.append((state["epoch"], state["pg_lightning"]["env_steps"], state["pg_lightning"]["episodes"]))
        assert state["optimizer_states"][0]["state"]
        collector = state["pg_lightning"]["processes"][0]["collector"]
        assert 0 < len(collector["recent_returns"]) <= 100 and collector["rng"] and collector["env_rng"]
    epochs = [h[0] for h in history]
    assert epochs == sorted(epochs) and len(set(epochs)) == 3  # each resume went further
    assert [h[1] for h in history] == sorted(h[1] for h in history)

    # finish the interrupted chain, and an uninterrupted run, at the same epoch: same weights
    final_epochs = epochs[-1] + 1 + 4
    config.write_text(KILL_CONFIG.format(epochs=final_epochs, dirpath=ckpts))
    finish = start(config, "--ckpt_path", str(last))
    assert finish.wait(timeout=120) == 0, finish.stderr.read().decode()[-2000:]
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    reference_config = reference_dir / "run.yaml"
    reference_config.write_text(KILL_CONFIG.format(epochs=final_epochs, dirpath=reference_dir / "ckpt"))
    reference = start(reference_config)
    assert reference.wait(timeout=120) == 0, reference.stderr.read().decode()[-2000:]

    resumed = torch.load(last, weights_only=True)
    straight = torch.load(reference_dir / "ckpt" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == straight["epoch"]
    for key in ("env_steps", "episodes"):
        assert resumed["pg_lightning"][key] == straight["pg_lightning"][key]
    for name, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
