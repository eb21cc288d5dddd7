"""Learning curves from Lightning ``CSVLogger`` runs: IQM (or mean) over seeds with a shaded band.

``python -m pg_lightning.plot RUN_DIR [RUN_DIR ...] --output curves.png``

Each RUN_DIR is one curve (an algorithm or a configuration; several compare them on one figure);
every ``metrics.csv`` found under it, at any depth, is one seed of that curve: the one-process
layout ``<run>/seed<k>/metrics.csv`` of a many-seeds run as well as ``pg_lightning.seeds``'s
``<run>/seed<k>/version_0/metrics.csv``. Seeds are interpolated linearly onto a common grid of
``--x`` values spanning the range all of them cover; the line is their interquartile mean at each
grid point (``--aggregate mean`` for the mean) and the band its 95% stratified bootstrap
confidence interval (``pg_lightning.statistics``: whole seed curves resampled, percentile
interval), or the min–max over seeds, ±1 std around the line, or none (``--band``). Rows whose
``--metric`` or ``--x`` cell is empty are skipped.

Needs matplotlib (``pip install 'pg_lightning[plot]'``); it is imported only to draw, and draws
with the Agg canvas, so no display and no pyplot global state are involved.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pg_lightning.errors import ConfigError, MissingExtra
from pg_lightning.statistics import BOOTSTRAP_REPS, iqm, stratified_bootstrap_ci

AGGREGATES = ("iqm", "mean")
BANDS = ("ci", "minmax", "std", "none")


@dataclass(frozen=True)
class Curve:
    """One seed's ``(x, y)`` points, sorted by x, from ``source``."""

    x: np.ndarray
    y: np.ndarray
    source: str = ""


@dataclass(frozen=True)
class Aggregate:
    """Statistics over seeds at each ``grid`` point: mean, std (population), min, max and IQM, and
    the 95% bootstrap interval ``[ci_low, ci_high]`` of ``statistic`` (``"iqm"`` or ``"mean"``)."""

    grid: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: int
    iqm: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    statistic: str = "iqm"

    @property
    def center(self) -> np.ndarray:
        """The curve to draw: the IQM or the mean, as ``statistic`` says."""
        return self.iqm if self.statistic == "iqm" else self.mean


def _number(cell: str | None) -> float | None:
    """The float in a CSV cell, or None for empty / non-numeric / non-finite cells."""
    if cell is None or not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_curve(path: str | Path, metric: str, x: str) -> Curve:
    """The ``(x, metric)`` pairs of one ``metrics.csv``, skipping rows where either cell is empty.

    Raises ``ConfigError`` when a column is missing (the message lists the columns there are).
    Points are sorted by x; an empty curve means no row had both values.
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for name in (metric, x):
            if name not in columns:
                raise ConfigError(f"{path}: no column {name!r}; columns: {', '.join(columns) or 'none'}")
        points = [(_number(row.get(x)), _number(row.get(metric))) for row in reader]
    points = sorted((px, py) for px, py in points if px is not None and py is not None)
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    return Curve(xs, ys, str(path))


def find_metrics(run_dir: str | Path) -> list[Path]:
    """Every ``metrics.csv`` under ``run_dir`` (recursively), in sorted order, but a many-seeds
    run's aggregate: a ``metrics.csv`` beside ``seed<k>/`` folders is read through them."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    files = sorted(f for f in run_dir.rglob("metrics.csv") if not any(f.parent.glob("seed*/metrics.csv")))
    if not files:
        raise ConfigError(f"{run_dir}: no metrics.csv found (a Lightning CSVLogger writes one per run)")
    return files


def load_run(run_dir: str | Path, metric: str, x: str) -> list[Curve]:
    """One curve per ``metrics.csv`` under ``run_dir``; files without any complete row are skipped."""
    curves = [read_curve(path, metric, x) for path in find_metrics(run_dir)]
    curves = [c for c in curves if len(c.x)]
    if not curves:
        raise ConfigError(f"{run_dir}: no row has both {metric!r} and {x!r}")
    return curves


def common_grid(curves: Sequence[Curve], points: int = 200) -> np.ndarray:
    """``points`` evenly spaced x values over the range every curve covers (their overlap)."""
    start = max(float(c.x[0]) for c in curves)
    stop = min(float(c.x[-1]) for c in curves)
    if start > stop:
        sources = ", ".join(c.source for c in curves)
        raise ConfigError(f"the seeds' x ranges do not overlap ({sources})")
    return np.linspace(start, stop, points) if stop > start else np.array([start])


def aggregate(
    curves: Sequence[Curve | tuple[Any, Any]],
    grid: Any,
    *,
    statistic: str = "iqm",
    reps: int = BOOTSTRAP_REPS,
    seed: int = 0,
) -> Aggregate:
    """Interpolate each curve linearly onto ``grid`` and reduce over curves point by point.

    ``curves`` are :class:`Curve` objects or ``(x, y)`` pairs with increasing x. A grid point
    outside a curve's x range is an error: pick the grid with :func:`common_grid`. The interval
    of ``statistic`` resamples whole curves (``reps`` times, numpy seed ``seed``), so every grid
    point's bounds come from the same resampled seeds.
    """
    if statistic not in AGGREGATES:
        raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {statistic!r}")
    grid = np.asarray(grid, dtype=float)
    values = []
    for curve in curves:
        cx, cy = (curve.x, curve.y) if isinstance(curve, Curve) else curve
        cx, cy = np.asarray(cx, dtype=float), np.asarray(cy, dtype=float)
        if len(cx) == 0 or grid.min() < cx[0] or grid.max() > cx[-1]:
            raise ValueError("grid extends beyond a curve's x range; use common_grid()")
        values.append(np.interp(grid, cx, cy))
    if not values:
        raise ValueError("aggregate needs at least one curve")
    stack = np.stack(values)
    line = (lambda s: iqm(s[:, 0], axis=0)) if statistic == "iqm" else (lambda s: s[:, 0].mean(0))
    ci_low, ci_high = stratified_bootstrap_ci(stack[:, None], line, reps=reps, seed=seed)  # seeds x 1 task x grid
    return Aggregate(
        grid, stack.mean(0), stack.std(0), stack.min(0), stack.max(0), len(values),
        iqm(stack, axis=0), ci_low, ci_high, statistic,
    )


def _figure() -> tuple[Any, Any]:
    """A matplotlib figure on the Agg canvas, without pyplot."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtra("plotting needs matplotlib: pip install 'pg_lightning[plot]'") from None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def plot_runs(
    run_dirs: Sequence[str | Path],
    output: str | Path,
    *,
    metric: str = "train/episode_return",
    x: str = "train/env_steps",
    labels: Sequence[str] | None = None,
    statistic: str = "iqm",
    band: str = "ci",
    points: int = 200,
    reps: int = BOOTSTRAP_REPS,
    title: str | None = None,
) -> dict[str, Aggregate]:
    """Draw one curve per run directory, the IQM or mean over its seeds, into ``output`` (PNG, SVG, ...).

    ``band`` is ``"ci"`` (95% stratified bootstrap interval of ``statistic`` from ``reps``
    resamples), ``"minmax"``, ``"std"`` (±1 std around the line) or ``"none"``; a one-seed curve
    gets none. Returns the plotted statistics by label. Raises ``ConfigError`` for missing runs,
    columns or data, and :class:`MissingExtra` (a ``ConfigError`` and ``ImportError``) without
    matplotlib.
    """
    if statistic not in AGGREGATES:
        raise ConfigError(f"aggregate must be one of {AGGREGATES}, got {statistic!r}")
    if band not in BANDS:
        raise ConfigError(f"band must be one of {BANDS}, got {band!r}")
    if points < 2:
        raise ConfigError(f"points must be >= 2, got {points}")
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}")
    labels = list(labels) if labels else [Path(d).resolve().name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ConfigError(f"got {len(labels)} labels for {len(run_dirs)} run directories")
    stats: dict[str, Aggregate] = {}
    for label, run_dir in zip(labels, run_dirs):
        curves = load_run(run_dir, metric, x)
        stats[label] = aggregate(curves, common_grid(curves, points), statistic=statistic, reps=reps)
    figure, ax = _figure()
    for label, agg in stats.items():
        seeds = f"{agg.seeds} seed{'s' if agg.seeds != 1 else ''}"
        marker = "o" if len(agg.grid) == 1 else None
        (line,) = ax.plot(agg.grid, agg.center, label=f"{label} ({seeds})", marker=marker)
        if band != "none" and agg.seeds > 1:
            low, high = {
                "ci": (agg.ci_low, agg.ci_high),
                "minmax": (agg.low, agg.high),
                "std": (agg.center - agg.std, agg.center + agg.std),
            }[band]
            ax.fill_between(agg.grid, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel(x)
    shading = {"ci": ", 95% CI", "minmax": ", min-max", "std": ", ±1 std", "none": ""}[band]
    ax.set_ylabel(f"{metric} ({'IQM' if statistic == 'iqm' else 'mean'} over seeds{shading})")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    return stats


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pg_lightning.plot",
        description="Plot learning curves from CSVLogger runs: one curve per RUN_DIR, the IQM (or "
        "mean) over the seeds (metrics.csv files) under it with a shaded band.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="one curve: every metrics.csv under it (recursively) is a seed")
    parser.add_argument("--output", "-o", required=True, help="image to write, e.g. curves.png")
    parser.add_argument("--metric", default="train/episode_return", help="y column (default: %(default)s)")
    parser.add_argument("--x", default="train/env_steps", help="x column (default: %(default)s)")
    parser.add_argument("--label", action="append",
                        help="legend label, once per RUN_DIR in order (default: the directory name)")
    parser.add_argument("--aggregate", choices=AGGREGATES, default="iqm",
                        help="line over seeds: interquartile mean or mean (default: %(default)s)")
    parser.add_argument("--band", choices=BANDS, default="ci",
                        help="shaded band: 95%% stratified bootstrap CI of the line, min-max over seeds, "
                        "±1 std or none (default: %(default)s)")
    parser.add_argument("--points", type=int, default=200, help="grid points per curve (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=BOOTSTRAP_REPS,
                        help="bootstrap resamples for --band ci (default: %(default)s)")
    parser.add_argument("--title", help="figure title")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the plot CLI on ``argv`` (default: the command line); bad inputs exit 2 with ``error: ...``."""
    args = _parser().parse_args(argv)
    try:
        stats = plot_runs(
            args.run_dirs, args.output, metric=args.metric, x=args.x, labels=args.label,
            statistic=args.aggregate, band=args.band, points=args.points, reps=args.reps, title=args.title,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = ", ".join(f"{label} ({agg.seeds})" for label, agg in stats.items())
    print(f"wrote {args.output}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
