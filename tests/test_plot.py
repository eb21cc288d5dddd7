"""Learning-curve plots: CSVLogger files in, mean over seeds on a common env-step grid, a PNG out."""

import subprocess
import sys

import numpy as np
import pytest

from pg_lightning.errors import ConfigError
from pg_lightning.plot import Curve, aggregate, common_grid, load_run, main, plot_runs, read_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADER = "epoch,step,train/env_steps,train/episode_return,train/loss,train/return_last100"


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")


@pytest.fixture
def runs(tmp_path):
    """Two runs as CSVLogger leaves them: ``ppo`` with two seeds on different env-step grids and
    empty cells (steps where only some metrics were logged), ``reinforce`` with one seed."""
    write_csv(tmp_path / "ppo/seed0/version_0/metrics.csv", [
        "0,0,,,0.5,10.0",          # no env_steps: skipped
        "1,1,0.0,10.0,0.4,10.0",
        "2,2,100.0,,0.3,12.0",     # no return: skipped
        "3,3,200.0,30.0,0.2,20.0",
        "4,4,300.0,50.0,0.1,30.0",
    ])
    write_csv(tmp_path / "ppo/seed1/version_0/metrics.csv", [
        "0,0,50.0,20.0,0.5,20.0",
        "1,1,150.0,,0.4,20.0",
        "2,2,250.0,40.0,0.3,30.0",
        "3,3,,,,31.0",
    ])
    write_csv(tmp_path / "reinforce/version_0/metrics.csv", [
        "0,0,0.0,5.0,1.0,5.0",
        "1,1,300.0,25.0,0.9,15.0",
    ])
    return tmp_path


def test_aggregate_matches_hand_computed_values():
    a = ([0.0, 10.0, 20.0], [0.0, 10.0, 20.0])
    b = ([0.0, 20.0], [10.0, 30.0])
    agg = aggregate([a, b], [0.0, 5.0, 10.0, 20.0])
    # a -> 0, 5, 10, 20; b -> 10, 15, 20, 30
    np.testing.assert_allclose(agg.mean, [5.0, 10.0, 15.0, 25.0])
    np.testing.assert_allclose(agg.low, [0.0, 5.0, 10.0, 20.0])
    np.testing.assert_allclose(agg.high, [10.0, 15.0, 20.0, 30.0])
    np.testing.assert_allclose(agg.std, [5.0, 5.0, 5.0, 5.0])
    assert agg.seeds == 2
    with pytest.raises(ValueError, match="common_grid"):
        aggregate([a, b], [0.0, 25.0])  # beyond both curves


def test_csv_rows_with_empty_cells_are_skipped_and_seeds_share_the_overlap(runs):
    seed0 = read_curve(runs / "ppo/seed0/version_0/metrics.csv", "train/episode_return", "train/env_steps")
    np.testing.assert_array_equal(seed0.x, [0.0, 200.0, 300.0])
    np.testing.assert_array_equal(seed0.y, [10.0, 30.0, 50.0])
    curves = load_run(runs / "ppo", "train/episode_return", "train/env_steps")
    assert len(curves) == 2
    grid = common_grid(curves, points=4)
    np.testing.assert_allclose(grid, [50.0, 350 / 3, 550 / 3, 250.0])  # seed1 starts at 50, ends at 250
    agg = aggregate(curves, [50.0, 200.0, 250.0])
    # seed0 at 50, 200, 250: 15, 30, 40; seed1: 20, 35, 40
    np.testing.assert_allclose(agg.mean, [17.5, 32.5, 40.0])
    np.testing.assert_allclose(agg.low, [15.0, 30.0, 40.0])
    np.testing.assert_allclose(agg.high, [20.0, 35.0, 40.0])


def test_main_writes_a_png(runs, capsys):
    out = runs / "plots/curves.png"
    assert main([str(runs / "ppo"), str(runs / "reinforce"), "--output", str(out),
                 "--label", "PPO", "--label", "REINFORCE"]) == 0
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert "PPO (2), REINFORCE (1)" in capsys.readouterr().out


def test_module_cli_writes_a_png_with_another_metric(runs):
    out = runs / "last100.png"
    result = subprocess.run(
        [sys.executable, "-m", "pg_lightning.plot", str(runs / "ppo"), "-o", str(out),
         "--metric", "train/return_last100", "--band", "std"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["{runs}/nothing_here"], "error: run directory"),
        (["{runs}/ppo", "--metric", "train/nope"],
         "error: {runs}/ppo/seed0/version_0/metrics.csv: no column 'train/nope'; columns: epoch, step"),
        (["{runs}/ppo", "--metric", "train/episode_return", "--x", "epoch", "--label", "a", "--label", "b"],
         "error: got 2 labels for 1 run directories"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(runs, capsys, args, message):
    args = [a.format(runs=runs) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--output", str(runs / "x.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(runs=runs)) and err.count("\n") == 1
    assert not (runs / "x.png").exists()


def test_missing_matplotlib_names_the_extra(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'pg_lightning\[plot\]'") as info:
        plot_runs([runs / "ppo"], runs / "x.png")
    assert isinstance(info.value, ConfigError)  # so the CLI reports it as one line


def test_seeds_without_a_common_range_are_an_error():
    with pytest.raises(ConfigError, match="do not overlap"):
        common_grid([Curve(np.array([0.0, 1.0]), np.array([0.0, 1.0])),
                     Curve(np.array([2.0, 3.0]), np.array([0.0, 1.0]))])
