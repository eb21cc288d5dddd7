"""Multi-seed runs, the W&B sweep config, and the README's pipeline sample."""

import csv
import io
import json
import re
from pathlib import Path

import lightning as L
import pytest
import yaml
from helpers import quiet_trainer

from pg_lightning import Reinforce, plot, seeds
from pg_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_one_command_runs_several_seeds_summarises_them_and_their_curves_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    summary = seeds.main(["cartpole_reinforce", "--seeds", "0", "1", "--csv", "csv", "--",  # a packaged config
                          "--model.max_env_steps", "2000", "--trainer.enable_progress_bar", "false"])
    files = sorted((tmp_path / "csv" / "cartpole_reinforce").glob("seed*/metrics.csv"))
    assert [f.parent.name for f in files] == ["seed0", "seed1"]
    texts = [f.read_text() for f in files]
    assert texts[0] != texts[1]  # different seeds, different runs
    written = json.loads((tmp_path / "csv" / "cartpole_reinforce" / "summary.json").read_text())
    assert written == summary and [s["seed"] for s in written["seeds"]] == [0, 1]
    for record, text in zip(written["seeds"], texts):  # each seed's last logged counters
        rows = list(csv.DictReader(io.StringIO(text)))
        last = next(r for r in reversed(rows) if r["train/env_steps"])
        assert record["env_steps"] == int(float(last["train/env_steps"])) >= 2000
        assert record["return_last100"] == pytest.approx(float(last["train/return_last100"]))
        assert record["solved_at"] is None  # 2000 steps do not solve CartPole
    aggregate = written["aggregate"]
    assert aggregate["num_seeds"] == 2 and aggregate["num_solved"] == 0 and aggregate["median_steps_to_solve"] is None
    returns = sorted(r["return_last100"] for r in written["seeds"])
    assert aggregate["iqm_return_last100"] == pytest.approx(sum(returns) / 2)  # two seeds: IQM is the mean
    assert returns[0] <= aggregate["iqm_ci95"][0] <= aggregate["iqm_ci95"][1] <= returns[1]
    assert capsys.readouterr().out.splitlines()[-1].startswith("Seeds done: 2 seeds: 0/2 solved, IQM last-100 return")
    assert plot.main([str(tmp_path / "csv" / "cartpole_reinforce"), "--output", "curve.png",
                      "--metric", "train/return_last100"]) in (0, None)
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_the_readme_pipeline_sample_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using the module in your own pipeline", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["model"].env_steps >= 1
    assert list(tmp_path.glob("logs/**/metrics.csv"))


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
