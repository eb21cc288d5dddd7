"""Run one config over several seeds in one command and report them with interval estimates:
consecutive seeds train side by side in one process (``num_seeds``).

    python -m pg_lightning.seeds cartpole_ppo --seeds 0 1 2 [--csv runs/csv] [--summary PATH] [-- TRAIN.PY ARGS]

A run of consecutive seeds is one ``train.py --model.seed FIRST --model.num_seeds COUNT`` (which
``seed_everything`` follows). By default each seed is its own W&B run, named ``<config>-seed<N>``
and grouped under the config's name (a many-seeds run adds one for the seeds' aggregate); ``--csv
DIR`` logs to ``DIR/<config>/seed<N>/`` instead,
which ``python -m pg_lightning.plot DIR/<config>`` turns into an IQM-over-seeds curve with its
95% interval band. At the end ``summary.json`` (``DIR/<config>/`` with ``--csv``, else
``runs/seeds/<config>/``) holds each seed's env steps, solved point and last-100 return, and their
aggregate (``statistics.summarize_seeds``: fraction solved, median steps to solve, IQM of the
last-100 return with a 95% stratified-bootstrap interval), which the last line prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pg_lightning import statistics
from pg_lightning.cli import CLI
from pg_lightning.cli import main as train


def seed_args(config: str, seed: int, csv: str | None, num_seeds: int = 1) -> list[str]:
    """``train.py`` arguments for seeds ``seed`` .. ``seed + num_seeds - 1`` of ``config`` in one
    process; every seed logs to ``<csv>/<config>/seed<N>/`` or its own W&B run ``<config>-seed<N>``
    (grouped by config): one run writes them itself with ``num_seeds`` (``SeedLoggers``)."""
    name = Path(config).stem
    args = ["fit", "--config", config, "--model.seed", str(seed), "--model.num_seeds", str(num_seeds)]
    if csv is None:
        run_name = name if num_seeds > 1 else f"{name}-seed{seed}"
        return args + ["--trainer.logger.group", name, "--trainer.logger.name", run_name]
    return args + [
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(Path(csv) / name) if num_seeds == 1 else csv,
        "--trainer.logger.name", f"seed{seed}" if num_seeds == 1 else name,
        "--trainer.logger.version", "",
    ]


def seed_records(cli: CLI) -> list[dict[str, Any]]:
    """The seeds' lines of ``summary.json``, from their finished fit."""
    model = cli.model
    if model.num_seeds > 1:
        return model.seed_records()
    return [{"seed": model.hparams.seed, "env_steps": model.env_steps, "solved_at": cli.solved_at(),
             "return_last100": model.return_last100}]


def runs(seeds: list[int]) -> list[tuple[int, int]]:
    """``seeds`` as ``(first seed, count)`` runs of consecutive seeds, each trained in one process
    with ``num_seeds`` (``[0, 1, 2, 7]`` is ``[(0, 3), (7, 1)]``)."""
    groups: list[tuple[int, int]] = []
    for seed in seeds:
        if groups and seed == groups[-1][0] + groups[-1][1]:
            groups[-1] = (groups[-1][0], groups[-1][1] + 1)
        else:
            groups.append((seed, 1))
    return groups


def summary_path(config: str, csv: str | None) -> Path:
    """Where ``summary.json`` goes: beside the seeds' CSV folders, or under ``runs/seeds/``."""
    return Path(csv if csv is not None else "runs/seeds") / Path(config).stem / "summary.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train every seed, write ``summary.json`` and print its aggregate; the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--csv", default=None, help="log CSV files under this folder instead of W&B")
    parser.add_argument("--summary", default=None, help="where to write summary.json (default: see above)")
    parser.epilog = "Arguments after `--` go to train.py unchanged."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:split]), argv[split + 1 :]
    records = [record for first, count in runs(args.seeds)
               for record in seed_records(train(seed_args(args.config, first, args.csv, count) + extra))]
    path = Path(args.summary) if args.summary else summary_path(args.config, args.csv)
    summary = statistics.write_summary(path, records)
    print(f"Seeds done: {statistics.format_aggregate(summary['aggregate'])}; summary {path}")
    return summary


if __name__ == "__main__":
    main()
