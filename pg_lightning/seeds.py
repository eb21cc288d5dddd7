"""Run one config over several seeds in one command, one run after another, and report them
with interval estimates.

    python -m pg_lightning.seeds cartpole_ppo --seeds 0 1 2 [--csv runs/csv] [--summary PATH] [-- TRAIN.PY ARGS]

Each seed sets ``--model.seed`` (which ``seed_everything`` follows). By default each seed is its own
W&B run, named ``<config>-seed<N>`` and grouped under the config's name, with its own run folder
and checkpoints; ``--csv DIR`` logs to ``DIR/<config>/seed<N>/`` instead,
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


def seed_args(config: str, seed: int, csv: str | None) -> list[str]:
    """``train.py`` arguments for one seed of ``config``."""
    name = Path(config).stem
    args = ["fit", "--config", config, "--model.seed", str(seed)]
    if csv is None:
        return args + ["--trainer.logger.group", name, "--trainer.logger.name", f"{name}-seed{seed}"]
    return args + [
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(Path(csv) / name),
        "--trainer.logger.name", f"seed{seed}",
        "--trainer.logger.version", "",
    ]


def seed_record(cli: CLI) -> dict[str, Any]:
    """One seed's line of ``summary.json``, from its finished fit."""
    model = cli.model
    return {"seed": model.hparams.seed, "env_steps": model.env_steps, "solved_at": cli.solved_at(),
            "return_last100": model.return_last100}


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
    records = [seed_record(train(seed_args(args.config, seed, args.csv) + extra)) for seed in args.seeds]
    path = Path(args.summary) if args.summary else summary_path(args.config, args.csv)
    summary = statistics.write_summary(path, records)
    print(f"Seeds done: {statistics.format_aggregate(summary['aggregate'])}; summary {path}")
    return summary


if __name__ == "__main__":
    main()
