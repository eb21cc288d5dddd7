"""Statistics across seeds: IQM and stratified bootstrap intervals against hand-computed cases."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pg_lightning.statistics import (
    format_aggregate,
    iqm,
    iqm_ci,
    stratified_bootstrap_ci,
    summarize_seeds,
    write_summary,
)


@pytest.mark.parametrize(
    "scores, expected",
    [
        ([7.0], 7.0),
        ([1.0, 2.0, 9.0], 4.0),                      # n < 4: int(0.75) = 0 cut, the plain mean
        ([4.0, 1.0, 3.0, 2.0], 2.5),                 # cut 1 each end: mean(2, 3)
        ([10.0, 1.0, 4.0, 3.0, 100.0], 17 / 3),     # n = 5: int(1.25) = 1 cut, mean(3, 4, 10)
        ([6.0, 5.0, 4.0, 3.0, 2.0, 1000.0], 4.5),   # n = 6: int(1.5) = 1 cut, mean(3, 4, 5, 6)
        ([0, 1, 2, 3, 4, 5, 6, 70], 3.5),            # n = 8: 2 cut, mean(2, 3, 4, 5)
    ],
)
def test_iqm_by_hand(scores, expected):
    assert iqm(scores) == pytest.approx(expected)


def test_iqm_pools_every_value_unless_given_an_axis():
    scores = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    assert iqm(scores) == pytest.approx(np.mean([3.0, 4.0, 10.0, 20.0]))  # 8 values, 2 cut each end
    np.testing.assert_allclose(iqm(scores, axis=0), [2.5, 25.0])
    with pytest.raises(ValueError):
        iqm([])


def test_iqm_equals_scipy_trim_mean():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in range(1, 41):
        scores = rng.standard_cauchy(n)
        assert iqm(scores) == pytest.approx(stats.trim_mean(scores, 0.25))
    scores = rng.normal(size=(9, 3))
    assert iqm(scores) == pytest.approx(stats.trim_mean(scores, 0.25, axis=None))
    np.testing.assert_allclose(iqm(scores, axis=0), stats.trim_mean(scores, 0.25, axis=0))


def test_bootstrap_interval_by_hand():
    # Two runs 0 and 1: a resample's mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles are 0 and 1, and the 30% and 70% ones both 0.5.
    assert stratified_bootstrap_ci([0.0, 1.0], np.mean) == (0.0, 1.0)
    assert stratified_bootstrap_ci([0.0, 1.0], np.mean, confidence=0.4) == (0.5, 0.5)


def test_bootstrap_resamples_within_each_task():
    # Task 0 scores < 100, task 1 >= 100: resampling within tasks keeps two of each in every resample.
    scores = [[0.0, 100.0], [1.0, 101.0]]
    assert stratified_bootstrap_ci(scores, lambda s: np.sum(s >= 100)) == (2.0, 2.0)


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    scores = rng.normal(480.0, 20.0, size=16)
    point, low, high = iqm_ci(scores)
    assert low < point < high
    assert iqm_ci(scores, seed=0) == (point, low, high)
    assert iqm_ci(scores, seed=1)[1:] != (low, high)
    assert iqm_ci(np.full(16, 500.0)) == (500.0, 500.0, 500.0)  # all runs equal: zero width
    assert iqm_ci([487.0]) == (487.0, 487.0, 487.0)


def test_curves_are_resampled_as_whole_runs():
    # Column 1 is column 0 + 5 in every run; with whole runs resampled its bounds shift by 5 exactly.
    rng = np.random.default_rng(2)
    first = rng.normal(size=12)
    point, low, high = iqm_ci(np.stack([first, first + 5.0], axis=1))
    np.testing.assert_allclose(point[1] - point[0], 5.0)
    np.testing.assert_allclose(low[1] - low[0], 5.0)
    np.testing.assert_allclose(high[1] - high[0], 5.0)
    with pytest.raises(ValueError):
        stratified_bootstrap_ci(first, np.mean, reps=0)


def test_matches_rliable_when_installed():
    try:
        from rliable import library, metrics
    except (ImportError, TypeError):  # not installed, or arch<8 fails to import beside pandas 3
        pytest.skip("rliable is not importable")
    rng = np.random.default_rng(3)
    scores = rng.normal(480.0, 20.0, size=(10, 2))
    point, interval = library.get_interval_estimates(
        {"a": scores}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=20_000,
        random_state=np.random.RandomState(0),
    )
    assert iqm(scores) == pytest.approx(point["a"][0])
    low, high = stratified_bootstrap_ci(scores, iqm, reps=20_000)
    np.testing.assert_allclose([low, high], interval["a"].ravel(), atol=1.0)  # Monte Carlo error


SEEDS = [
    {"seed": 0, "env_steps": 40_960, "solved_at": 40_000, "return_last100": 500.0},
    {"seed": 1, "env_steps": 100_000, "solved_at": None, "return_last100": 480.0},
    {"seed": 2, "env_steps": 51_200, "solved_at": 50_000, "return_last100": 490.0},
    {"seed": 3, "env_steps": 100_000, "solved_at": None, "return_last100": 20.0},
    {"seed": 4, "env_steps": 61_440, "solved_at": 60_000, "return_last100": 470.0},
]


def test_summary_by_hand():
    summary = summarize_seeds(SEEDS)
    assert summary["seeds"] == SEEDS
    agg = summary["aggregate"]
    assert (agg["num_seeds"], agg["num_solved"], agg["fraction_solved"]) == (5, 3, 0.6)
    assert agg["median_steps_to_solve"] == 50_000
    assert agg["mean_return_last100"] == pytest.approx(392.0)
    assert agg["iqm_return_last100"] == pytest.approx(480.0)  # 20 and 500 cut: mean(470, 480, 490)
    low, high = agg["iqm_ci95"]
    assert low <= 480.0 <= high
    assert "bootstrap" in agg["ci_method"]


def test_summary_without_solves_or_returns():
    seeds = [{"seed": 7, "env_steps": 10, "solved_at": None, "return_last100": float("nan")}]
    summary = summarize_seeds(seeds)
    assert summary["seeds"][0]["return_last100"] is None
    agg = summary["aggregate"]
    assert agg["median_steps_to_solve"] is None and agg["iqm_return_last100"] is None
    assert agg["iqm_ci95"] is None and agg["num_seeds_with_return"] == 0
    assert format_aggregate(agg) == "1 seed: 0/1 solved, no finished episode"
    with pytest.raises(ValueError, match="solved_at"):
        summarize_seeds([{"seed": 0, "env_steps": 1, "return_last100": 1.0}])


def test_write_summary_is_json_and_replaces_atomically(tmp_path):
    path = tmp_path / "run/summary.json"
    seeds = [{**s, "seed": np.int64(s["seed"])} for s in SEEDS]  # numpy scalars are written as numbers
    write_summary(path, seeds)
    write_summary(path, seeds[:2])
    data = json.loads(path.read_text())
    assert data["aggregate"]["num_seeds"] == 2 and data["seeds"][1]["seed"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temporary file left


def test_format_aggregate():
    agg = {"num_seeds": 16, "num_solved": 15, "median_steps_to_solve": 48_640.0,
           "iqm_return_last100": 487.21, "iqm_ci95": [480.06, 493.0]}
    assert format_aggregate(agg) == (
        "16 seeds: 15/16 solved, median 48,640 steps to solve, IQM last-100 return 487.2 [95% CI 480.1, 493.0]"
    )


def test_importing_statistics_loads_neither_torch_nor_lightning():
    code = "import sys, pg_lightning.statistics; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
