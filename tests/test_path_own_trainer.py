"""The path of a Lightning user with their own pipeline: the module in a plain Trainer, with
EarlyStopping, ModelCheckpoint, LearningRateMonitor and its loggers, the Trainer's flags (those that
work and those refused before training), and the README's pipeline sample."""

import math
import re
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import PerUpdate
from helpers import quiet_trainer as trainer
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from pg_lightning import A2C, PPO, Reinforce, RunCheckpoint
from pg_lightning.errors import ConfigError
from pg_lightning.registry import model_from_config

ROOT = Path(__file__).resolve().parents[1]


def weights(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.policy.parameters()]


# ---- the README's sample ---------------------------------------------------------------------
def test_the_readme_pipeline_sample_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using the module in your own pipeline", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["model"].env_steps >= 1
    assert list(tmp_path.glob("logs/**/metrics.csv"))


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


def test_statistics_a_callback_saves_are_those_of_the_weights_it_saves():
    module = A2C(seed=0, num_envs=2, n_steps=8, normalize_observations=True, normalize_rewards=True)
    counts, transitions = [], []

    class AtBatchEnd(L.Callback):  # where ModelCheckpoint(every_n_train_steps=...) saves
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            counts.append(int(pl_module.policy.obs_rms.count))
            transitions.append(batch.num_steps)

    trainer(max_epochs=4, callbacks=[AtBatchEnd()]).fit(module)
    assert counts == [sum(transitions[: i + 1]) for i in range(4)]  # this batch included, not one behind


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
