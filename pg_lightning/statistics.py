"""Statistics across seeds as Agarwal et al. (2021) recommend: IQM with stratified bootstrap intervals.

The interquartile mean (IQM) is the mean of the middle 50% of runs: robust to one failed seed, yet
less noisy than the median. Its uncertainty is a percentile confidence interval from a stratified
bootstrap: runs are resampled with replacement within each task (with one task, over seeds;
rliable#20), the statistic is recomputed on every resample, and the interval is the central
``confidence`` share of those values. This is what rliable's ``metrics.aggregate_iqm`` and
``library.get_interval_estimates(method="percentile")`` compute; it is implemented here in numpy
because rliable pins ``arch<8`` and pulls in statsmodels, seaborn and absl for two short functions.

Only numpy is imported, so ``pg_lightning.plot`` and the summary stay light.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BOOTSTRAP_REPS = 2000
CONFIDENCE = 0.95
SEED_KEYS = ("seed", "env_steps", "solved_at", "return_last100")


def iqm(scores: Any, axis: int | None = None) -> Any:
    """Interquartile mean: the mean after cutting ``int(0.25 * n)`` values from each end.

    The same as ``scipy.stats.trim_mean(scores, 0.25, axis)`` and so rliable's ``aggregate_iqm``
    (``axis=None`` pools every value): with n = 5 or 6 one value is cut from each end, with n < 4
    none. Returns a float for ``axis=None`` or 1-D input, else an array over the other axes.
    """
    values = np.asarray(scores, dtype=float)
    if axis is None:
        values, axis = values.ravel(), 0
    values = np.moveaxis(values, axis, 0)
    n = values.shape[0]
    if n == 0:
        raise ValueError("iqm of no scores")
    cut = int(0.25 * n)
    middle = np.sort(values, axis=0)[cut : n - cut]
    result = middle.mean(axis=0)
    return float(result) if result.ndim == 0 else result


def stratified_bootstrap_ci(
    scores_per_task: Any,
    statistic: Callable[[np.ndarray], Any],
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Percentile confidence interval ``(low, high)`` of ``statistic`` by a stratified bootstrap.

    ``scores_per_task`` has runs on axis 0 and tasks on axis 1 (a 1-D array is one task); further
    axes, such as the points of a learning curve, travel with their run, so a run is resampled
    whole. Each of ``reps`` resamples draws, for every task on its own, as many runs as it has
    with replacement; ``statistic`` maps a resample (same shape as the input) to a float or an
    array, and the bounds are the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles
    of its values (numpy's linear interpolation, as rliable via arch). ``seed`` fixes the draws.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    scores = np.asarray(scores_per_task, dtype=float)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim < 2 or scores.shape[0] == 0:
        raise ValueError(f"need at least one run per task, got shape {np.shape(scores_per_task)}")
    runs, tasks = scores.shape[:2]
    rng = np.random.default_rng(seed)
    task_index = np.arange(tasks)
    values = np.stack([
        np.asarray(statistic(scores[rng.integers(0, runs, size=(runs, tasks)), task_index]), dtype=float)
        for _ in range(reps)
    ])
    alpha = (1 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


def iqm_ci(
    runs: Any, reps: int = BOOTSTRAP_REPS, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[Any, Any, Any]:
    """``(iqm, low, high)`` over runs (axis 0) of one task, column by column for 2-D input.

    For a scalar score per seed, or a learning curve per seed on a common grid (seeds x points),
    where each point gets its IQM and interval from the same resampled seeds.
    """
    values = np.asarray(runs, dtype=float)
    low, high = stratified_bootstrap_ci(
        values[:, None], lambda sample: iqm(sample[:, 0], axis=0), reps, confidence, seed
    )
    return iqm(values, axis=0), low, high


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when missing or not finite (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def summarize_seeds(seeds: Sequence[Mapping[str, Any]], reps: int = BOOTSTRAP_REPS) -> dict[str, Any]:
    """The ``summary.json`` content for a many-seeds run: the per-seed records and their aggregate.

    Each record has ``seed``, ``env_steps``, ``solved_at`` (env steps, or None if never solved)
    and ``return_last100`` (None or NaN when no episode finished; written as null); extra keys are
    kept. The aggregate holds ``num_seeds``, ``num_solved``, ``fraction_solved``,
    ``median_steps_to_solve`` (over solved seeds; None if none solved), and over the seeds with a
    return: ``mean_return_last100``, ``iqm_return_last100`` (25% trimmed mean, as rliable) and
    ``iqm_ci95`` ``[low, high]``, a 95% percentile interval from a bootstrap over seeds (one task, so
    the stratified bootstrap resamples seeds; ``reps`` resamples, seed 0, so the file is
    reproducible). ``ci_method`` says so in words.
    """
    if not seeds:
        raise ValueError("summarize_seeds needs at least one seed record")
    records = []
    for record in seeds:
        missing = [key for key in SEED_KEYS if key not in record]
        if missing:
            raise ValueError(f"seed record {dict(record)!r} lacks {', '.join(missing)}")
        records.append({**record, "return_last100": _finite(record["return_last100"])})
    solved = [r["solved_at"] for r in records if r["solved_at"] is not None]
    returns = [r["return_last100"] for r in records if r["return_last100"] is not None]
    center = low = high = mean = None
    if returns:
        center, low, high = iqm_ci(returns, reps=reps)
        mean = float(np.mean(returns))
    aggregate = {
        "num_seeds": len(records),
        "num_solved": len(solved),
        "fraction_solved": len(solved) / len(records),
        "median_steps_to_solve": float(np.median(solved)) if solved else None,
        "num_seeds_with_return": len(returns),
        "mean_return_last100": mean,
        "iqm_return_last100": center,
        "iqm_ci95": [low, high] if returns else None,
        "ci_method": f"95% percentile interval of the IQM over {reps} bootstrap resamples of the "
        "seeds (stratified bootstrap with one task; numpy seed 0)",
    }
    return {"seeds": records, "aggregate": aggregate}


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists, for ``json``."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_summary(path: str | Path, seeds: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, Any]:
    """Write :func:`summarize_seeds` (``options`` go to it) to ``path`` as JSON and return it.

    Atomic: written to a temporary file in the same folder, then renamed over ``path``, so a
    reader never sees half a file.
    """
    summary = summarize_seeds(seeds, **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(summary, f, indent=2, default=_plain, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return summary


def format_aggregate(aggregate: Mapping[str, Any]) -> str:
    """One line for the ``Done:`` message, e.g. ``16 seeds: 15/16 solved, median 48,640 steps to
    solve, IQM last-100 return 487.2 [95% CI 480.1, 493.0]``."""
    n = aggregate["num_seeds"]
    parts = [f"{aggregate['num_solved']}/{n} solved"]
    if aggregate["median_steps_to_solve"] is not None:
        parts.append(f"median {aggregate['median_steps_to_solve']:,.0f} steps to solve")
    if aggregate["iqm_return_last100"] is None:
        parts.append("no finished episode")
    else:
        low, high = aggregate["iqm_ci95"]
        parts.append(f"IQM last-100 return {aggregate['iqm_return_last100']:.1f} [95% CI {low:.1f}, {high:.1f}]")
    return f"{n} seed{'s' if n != 1 else ''}: " + ", ".join(parts)
