"""Learning curves from Lightning ``CSVLogger`` runs: mean over seeds with a shaded band.

``python -m pg_lightning.plot RUN_DIR [RUN_DIR ...] --output curves.png``

Each RUN_DIR is one curve (an algorithm or a configuration); every ``metrics.csv`` found under it,
at any depth, is one seed of that curve. Seeds are interpolated linearly onto a common grid of
``--x`` values spanning the range all of them cover, then averaged; the band is the min–max over
seeds (``--band std`` for ±1 std). Rows whose ``--metric`` or ``--x`` cell is empty are skipped.

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

BANDS = ("minmax", "std", "none")


@dataclass(frozen=True)
class Curve:
    """One seed's ``(x, y)`` points, sorted by x, from ``source``."""

    x: np.ndarray
    y: np.ndarray
    source: str = ""


@dataclass(frozen=True)
class Aggregate:
    """Statistics over seeds at each ``grid`` point: mean, std (population), min and max."""

    grid: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: int


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
    """Every ``metrics.csv`` under ``run_dir`` (recursively), in sorted order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    files = sorted(run_dir.rglob("metrics.csv"))
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


def aggregate(curves: Sequence[Curve | tuple[Any, Any]], grid: Any) -> Aggregate:
    """Interpolate each curve linearly onto ``grid`` and reduce over curves point by point.

    ``curves`` are :class:`Curve` objects or ``(x, y)`` pairs with increasing x. A grid point
    outside a curve's x range is an error: pick the grid with :func:`common_grid`.
    """
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
    return Aggregate(grid, stack.mean(0), stack.std(0), stack.min(0), stack.max(0), len(values))


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
    band: str = "minmax",
    points: int = 200,
    title: str | None = None,
) -> dict[str, Aggregate]:
    """Draw one mean-over-seeds curve per run directory into ``output`` (PNG, PDF, SVG, ...).

    Returns the plotted statistics by label. Raises ``ConfigError`` for missing runs, columns or
    data, and :class:`MissingExtra` (a ``ConfigError`` and ``ImportError``) without matplotlib.
    """
    if band not in BANDS:
        raise ConfigError(f"band must be one of {BANDS}, got {band!r}")
    if points < 2:
        raise ConfigError(f"points must be >= 2, got {points}")
    labels = list(labels) if labels else [Path(d).resolve().name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ConfigError(f"got {len(labels)} labels for {len(run_dirs)} run directories")
    stats: dict[str, Aggregate] = {}
    for label, run_dir in zip(labels, run_dirs):
        curves = load_run(run_dir, metric, x)
        stats[label] = aggregate(curves, common_grid(curves, points))
    figure, ax = _figure()
    for label, agg in stats.items():
        seeds = f"{agg.seeds} seed{'s' if agg.seeds != 1 else ''}"
        marker = "o" if len(agg.grid) == 1 else None
        (line,) = ax.plot(agg.grid, agg.mean, label=f"{label} ({seeds})", marker=marker)
        if band != "none" and agg.seeds > 1:
            low, high = (agg.low, agg.high) if band == "minmax" else (agg.mean - agg.std, agg.mean + agg.std)
            ax.fill_between(agg.grid, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
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
        description="Plot learning curves from CSVLogger runs: one curve per RUN_DIR, the mean over "
        "the seeds (metrics.csv files) under it with a shaded band.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="one curve: every metrics.csv under it (recursively) is a seed")
    parser.add_argument("--output", "-o", required=True, help="image to write, e.g. curves.png")
    parser.add_argument("--metric", default="train/episode_return", help="y column (default: %(default)s)")
    parser.add_argument("--x", default="train/env_steps", help="x column (default: %(default)s)")
    parser.add_argument("--label", action="append",
                        help="legend label, once per RUN_DIR in order (default: the directory name)")
    parser.add_argument("--band", choices=BANDS, default="minmax",
                        help="shaded band over seeds: min-max, ±1 std or none (default: %(default)s)")
    parser.add_argument("--points", type=int, default=200, help="grid points per curve (default: %(default)s)")
    parser.add_argument("--title", help="figure title")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the plot CLI on ``argv`` (default: the command line); bad inputs exit 2 with ``error: ...``."""
    args = _parser().parse_args(argv)
    try:
        stats = plot_runs(
            args.run_dirs, args.output, metric=args.metric, x=args.x, labels=args.label,
            band=args.band, points=args.points, title=args.title,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    summary = ", ".join(f"{label} ({agg.seeds})" for label, agg in stats.items())
    print(f"wrote {args.output}: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
