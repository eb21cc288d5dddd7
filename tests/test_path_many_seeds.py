"""The path of a study over seeds: pg_lightning.seeds runs a config for several seeds, writes each
seed's CSV and summary.json (IQM and its interval), and pg_lightning.plot draws their curves."""

import csv
import io
import json

import pytest

from pg_lightning import plot, seeds


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
