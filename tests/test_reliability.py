"""Reliability: exact resume after SIGKILL, bad input, non-finite updates, no network."""

import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch
from helpers import quiet_trainer as trainer
from helpers import user_env, wandb_run
from lightning.pytorch.plugins.precision import MixedPrecision

from pg_lightning import A2C, PPO, Reinforce, gradient_step
from pg_lightning.cli import main
from pg_lightning.errors import TrainingError

ROOT = Path(__file__).resolve().parents[1]


# ---- envs that misbehave ---------------------------------------------------------------------
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


# ---- exact resume -----------------------------------------------------------------------------


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
    assert resumed._collector_state["recent_returns"] == straight._collector_state["recent_returns"]


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


# ---- bad input: one line, non-zero exit, nothing left behind ---------------------------------
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


# ---- numerical safety -------------------------------------------------------------------------
class Poisoned(Reinforce):
    """Reinforce whose loss (or gradient) is non-finite on the updates listed in ``bad``."""

    def __init__(self, bad=(), where="loss", **kwargs):
        super().__init__(**kwargs)
        self.bad, self.where, self.updates, self.poisoned_losses = set(bad), where, 0, []

    def compute_losses(self, batch):
        terms = super().compute_losses(batch)
        self.updates += 1
        if self.updates in self.bad:
            if self.where == "loss":
                terms["loss"] = terms["loss"] * float("nan")
            else:  # adds sqrt(0) = 0 to the loss, whose gradient 1 / (2 sqrt(0)) is infinite
                bias = self.policy.actor_out.bias
                terms["loss"] = terms["loss"] + torch.sqrt(bias - bias.detach()).sum()
            self.poisoned_losses.append(float(terms["loss"]))
        return terms


@pytest.mark.parametrize("where", ["loss", "gradient"])
@pytest.mark.parametrize("max_grad_norm", [None, 1.0])  # the finiteness check alone, or the clipping norm's
def test_non_finite_updates_are_skipped_and_counted(where, max_grad_norm):
    module = Poisoned(bad={2, 3}, where=where, seed=0, max_skipped_updates=5, max_grad_norm=max_grad_norm)
    weights = []

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            weights.append([p.detach().clone() for p in pl_module.parameters()])

    trainer(max_epochs=5, callbacks=[Snapshot()]).fit(module)
    assert module.skipped_updates == 2
    # the "gradient" case is a finite loss with a non-finite gradient, which the guard must catch too
    assert all(math.isfinite(v) for v in module.poisoned_losses) == (where == "gradient")
    for before, after in ((weights[0], weights[1]), (weights[1], weights[2])):  # updates 2, 3 did nothing
        assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not all(torch.equal(a, b) for a, b in zip(weights[2], weights[3]))  # update 4 did
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_too_many_non_finite_updates_in_a_row_stop_training():
    module = Poisoned(bad=range(1, 100), seed=0, max_skipped_updates=3)
    with pytest.raises(TrainingError, match="3 updates in a row had a non-finite loss or gradient"):
        trainer(max_epochs=10).fit(module)


# ---- mixed precision --------------------------------------------------------------------------
DEVICES = ["cpu", pytest.param("cuda", id="gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                          reason="needs a GPU"))]


def amp(precision: str, device: str) -> MixedPrecision:
    """Lightning's plugin for ``precision``, with a GradScaler for 16-mixed: CUDA's default, but a first
    scale of 2^10 (2^16 overflows float16 on these gradients, and the scaler skips steps until it is lower)."""
    scaler = torch.amp.GradScaler(device, init_scale=2.0**10) if precision == "16-mixed" else None
    return MixedPrecision(precision, device, scaler=scaler)


def gradient_norms(monkeypatch) -> list[float]:
    """The norms on_before_optimizer_step clips with, recorded as they are computed."""
    norms, norm = [], gradient_step.gradient_norm
    monkeypatch.setattr(gradient_step, "gradient_norm", lambda grads: (result := norm(grads), norms.append(float(result)))[0])
    return norms


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("cls", [A2C, PPO])  # automatic and manual optimisation
def test_mixed_precision_clips_the_unscaled_gradients(cls, precision, device, monkeypatch):
    first_norms = []
    for plugins in ([], [amp(precision, device)]):
        norms = gradient_norms(monkeypatch)
        module = cls(seed=0, max_grad_norm=0.5, n_steps=16, num_envs=2)
        trainer(max_epochs=2, accelerator=device, devices=1, plugins=plugins).fit(module)
        assert module.skipped_updates == 0 and all(math.isfinite(n) for n in norms)
        first_norms.append(norms[0])
    fp32, mixed = first_norms
    assert mixed == pytest.approx(fp32, rel=0.05)  # not 2^10 times larger


class TorchFusedAdam(A2C):
    """A2C with torch's fused Adam, which unscales AMP gradients in its own step."""

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, fused=True)


def test_an_optimizer_that_unscales_itself_is_unscaled_before_clipping_under_16_mixed(monkeypatch):
    first_norms = []
    for plugins in ([], [amp("16-mixed", "cpu")]):
        norms = gradient_norms(monkeypatch)
        module = TorchFusedAdam(seed=0, max_grad_norm=0.5, n_steps=16, num_envs=2)
        trainer(max_epochs=2, plugins=plugins).fit(module)
        assert all(math.isfinite(n) for n in norms)
        first_norms.append(norms[0])
    assert first_norms[1] == pytest.approx(first_norms[0], rel=0.05)  # not 2^10 times larger


class GradientNorms(L.Callback):
    """The gradients' norm Lightning clips (after the hooks), and the norm the optimizer steps with."""

    def __init__(self):
        self.before, self.stepped = [], []

    def on_train_start(self, trainer, pl_module):
        def record(optimizer, *args):
            return self.stepped.append(self.norm(pl_module))
        trainer.optimizers[0].register_step_pre_hook(record)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.before.append(self.norm(pl_module))

    @staticmethod
    def norm(module):
        return float(torch.nn.utils.get_total_norm([p.grad for p in module.parameters() if p.grad is not None]))


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_clip_val_clips_the_unscaled_gradients_under_16_mixed(device):
    norms = GradientNorms()
    module = Reinforce(seed=0)  # automatic optimisation, no clipping of its own
    trainer(max_epochs=3, accelerator=device, devices=1, gradient_clip_val=0.05, plugins=[amp("16-mixed", device)],
            callbacks=[norms]).fit(module)
    assert module.skipped_updates == 0 and len(norms.stepped) == len(norms.before) == 3
    assert all(0.05 < n < 100 for n in norms.before)  # unscaled (a 2^10 scale would make them ~1e3)
    assert all(n == pytest.approx(0.05, rel=1e-3) for n in norms.stepped)


# ---- no network -------------------------------------------------------------------------------
def test_a_key_but_no_network_still_trains_offline_and_keeps_the_metrics(tmp_path):
    env = user_env(tmp_path, WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--model.max_env_steps", "1000",
         "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "W&B: offline (server unreachable), run " in result.stdout + result.stderr
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    assert any("train/return_last100" in row for row in wandb_run(runs[0])["history"])
