"""Learning-curve plots: CSVLogger files in, IQM or mean over seeds on a common env-step grid, a PNG out."""

import subprocess
import sys

import numpy as np
import pytest

from pg_lightning import plot
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


def test_iqm_line_and_band_by_hand():
    # Five seeds from c to 0 over x in [0, 100]; c = 0, 10, 20, 30, 1000. At x = 0 the IQM drops
    # one seed at each end: mean(10, 20, 30) = 20; at x = 50 it is 10; at x = 100 all seeds are 0.
    curves = [([0.0, 100.0], [c, 0.0]) for c in (0.0, 10.0, 20.0, 30.0, 1000.0)]
    agg = aggregate(curves, [0.0, 50.0, 100.0])
    np.testing.assert_allclose(agg.iqm, [20.0, 10.0, 0.0])
    np.testing.assert_allclose(agg.center, agg.iqm)
    np.testing.assert_allclose(agg.mean, [212.0, 106.0, 0.0])
    assert np.all(agg.ci_low <= agg.iqm) and np.all(agg.iqm <= agg.ci_high)
    assert agg.ci_low[0] >= 0.0 and agg.ci_high[0] <= 1000.0 and agg.ci_low[0] < agg.ci_high[0]
    assert agg.ci_low[2] == agg.ci_high[2] == 0.0  # every seed agrees: zero width
    # Whole curves are resampled, so the band halves with the curves: x = 50 is x = 0 scaled by 1/2.
    np.testing.assert_allclose([agg.ci_low[1], agg.ci_high[1]], [agg.ci_low[0] / 2, agg.ci_high[0] / 2])
    mean = aggregate(curves, [0.0, 50.0, 100.0], statistic="mean")
    np.testing.assert_allclose(mean.center, mean.mean)
    assert mean.ci_low[0] < 212.0 < mean.ci_high[0]


def test_many_seeds_layout_and_two_configs_give_two_labelled_curves(tmp_path, monkeypatch):
    # A many-seeds run writes <run>/seed<k>/metrics.csv; here 4 seeds of PPO against 2 of A2C.
    for k, final in enumerate((100.0, 200.0, 300.0, 4000.0)):
        write_csv(tmp_path / f"ppo/seed{k}/metrics.csv", ["0,0,0.0,0.0,0.1,0.0", f"1,1,100.0,{final},0.1,0.0"])
    for k in range(2):
        write_csv(tmp_path / f"a2c/seed{k}/metrics.csv", [f"0,0,0.0,{k}.0,0.1,0.0", "1,1,100.0,10.0,0.1,0.0"])
    drawn = []

    def capture():
        figure, ax = real_figure()
        drawn.append(ax)
        return figure, ax

    real_figure = plot._figure
    monkeypatch.setattr(plot, "_figure", capture)
    stats = plot_runs([tmp_path / "ppo", tmp_path / "a2c"], tmp_path / "cmp.png", labels=["PPO", "A2C"], points=3)
    assert (tmp_path / "cmp.png").read_bytes()[:8] == PNG_MAGIC
    assert [stats["PPO"].seeds, stats["A2C"].seeds] == [4, 2]
    np.testing.assert_allclose(stats["PPO"].iqm, [0.0, 125.0, 250.0])  # mean of the middle two seeds
    (ax,) = drawn
    assert ax.get_legend_handles_labels()[1] == ["PPO (4 seeds)", "A2C (2 seeds)"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.0, 125.0, 250.0])
    assert len(ax.collections) == 2  # one CI band per curve
    assert "IQM over seeds, 95% CI" in ax.get_ylabel()


def test_cli_mean_with_minmax_band_and_bad_aggregate(runs, capsys):
    out = runs / "mean.png"
    assert main([str(runs / "ppo"), "-o", str(out), "--aggregate", "mean", "--band", "minmax", "--reps", "50"]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ConfigError, match="aggregate must be one of"):
        plot_runs([runs / "ppo"], out, statistic="median")
