"""The path of a W&B sweep: every packaged sweep's parameters are options the CLI accepts, and
its objective (train/return_auc) ranks a run that solves sooner higher."""

from pathlib import Path

import lightning as L
import pytest
import yaml
from helpers import quiet_trainer

from pg_lightning import Reinforce
from pg_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sweep", sorted((ROOT / "configs/sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_sweep_parameters_are_options_the_cli_accepts(sweep, capsys):
    spec = yaml.safe_load(sweep.read_text())
    assert spec["program"] == "train.py" and "${args}" in spec["command"]
    config = spec["command"][spec["command"].index("--config") + 1]
    args = []
    for name, values in spec["parameters"].items():
        value = values["values"][-1] if "values" in values else values["max"]
        args.append(f"--{name}={value}")  # how `wandb agent` passes them
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(ROOT / config), *args, "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    for name, values in spec["parameters"].items():
        section, key = name.split(".")
        expected = values["values"][-1] if "values" in values else values["max"]
        assert printed[section]["init_args"][key] == expected


def test_the_sweep_objective_ranks_a_run_that_solves_sooner_higher():
    spec = yaml.safe_load((ROOT / "configs/sweeps/cartpole_ppo.yaml").read_text())
    assert spec["metric"] == {"name": "train/return_auc", "goal": "maximize"}
    assert spec["early_terminate"]["type"] == "hyperband"
    module = Reinforce(seed=0, max_env_steps=3000)
    seen = []  # (env steps of the update, return_last100 after it)

    class Curve(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((batch.env_steps, pl_module.return_last100))

    trainer = quiet_trainer(callbacks=[Curve()])
    trainer.fit(module)
    area = sum(steps * value for steps, value in seen)
    assert module.run_statistics.return_area == pytest.approx(area)
    assert float(trainer.callback_metrics["train/return_auc"]) == pytest.approx(
        (area + max(3000 - module.env_steps, 0) * seen[-1][1]) / 3000)

    def objective(solved_at: int) -> float:  # return_last100 rising evenly to 475, then stopped there
        stats = module.run_statistics
        stats.return_area, stats.env_steps, stats.return_last100 = 475 / 2 * solved_at, solved_at, 475.0
        return module.return_auc

    module.hparams.max_env_steps = 300_000
    assert objective(60_000) == pytest.approx((475 / 2 * 60_000 + 240_000 * 475) / 300_000)
    assert objective(60_000) > objective(200_000) + 100  # return_last100 is 475 for both
