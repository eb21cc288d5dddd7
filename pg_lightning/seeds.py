"""Run one config over several seeds in one command, one run after another.

    python -m pg_lightning.seeds configs/cartpole_ppo.yaml --seeds 0 1 2 [--csv runs/csv] [-- TRAIN.PY ARGS]

Each seed sets ``--model.seed`` (which ``seed_everything`` follows). By default each seed is its own
W&B run, named ``<config>-seed<N>`` and grouped under the config's name, with its own run folder
and checkpoints; ``--csv DIR`` logs to ``DIR/<config>/seed<N>/`` instead,
which ``python -m pg_lightning.plot DIR/<config>`` turns into a mean-over-seeds curve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--csv", default=None, help="log CSV files under this folder instead of W&B")
    parser.epilog = "Arguments after `--` go to train.py unchanged."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:split]), argv[split + 1 :]
    for seed in args.seeds:
        train(seed_args(args.config, seed, args.csv) + extra)


if __name__ == "__main__":
    main()
