"""How reliably each config reaches its target on seeds it was not tuned on: the README's table.

Each config trains on seeds ``--first-seed`` .. ``--first-seed + N - 1`` (default 100-119: the
configs were tuned on seeds 0-11), within its own env-step budget, one torch thread per run,
``--jobs`` runs at a time. Target = the config's ``solved.threshold`` (else the env's reward
threshold) for the mean return of the last 100 training episodes. Prints one line per run and a
Markdown table at the end.

    python benchmarks/robustness.py configs/cartpole_ppo.yaml configs/cartpole_a2c.yaml --seeds 20 --jobs 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from pathlib import Path

import torch
import yaml
from time_to_solve import Stopwatch, run

from pg_lightning.statistics import iqm_ci


def one_run(job: tuple[str, int, dict]) -> dict:
    config, seed, overrides = job
    torch.set_num_threads(1)
    return {"config": config, **run(config, seed, overrides, Stopwatch())}


def table(results: list[dict], configs: list[str]) -> str:
    """Markdown: solved / seeds, median and worst env steps to solve, the IQM of the final last-100
    mean return over seeds with its 95% stratified-bootstrap interval, median seconds, unsolved seeds."""
    lines = ["| config | target | solved | median steps to solve | slowest solve | IQM last-100 [95% CI] | median s "
             "| not solved (last-100 mean) |",
             "|---|---|---|---|---|---|---|---|"]
    for config in configs:
        rows = [r for r in results if r["config"] == config]
        solved = [r for r in rows if r["solved"]]
        steps = [r["env_steps"] for r in solved]
        failed = ", ".join(f"seed {r['seed']} ({r['last100']:.0f})" for r in rows if not r["solved"]) or "-"
        iqm, low, high = iqm_ci([r["last100"] for r in rows])
        lines.append(
            f"| `{Path(config).name}` | {rows[0]['threshold']:g} | {len(solved)}/{len(rows)} | "
            f"{statistics.median(steps) if steps else float('nan'):,.0f} | {max(steps, default=0):,} | "
            f"{iqm:.1f} [{low:.1f}, {high:.1f}] | "
            f"{statistics.median(r['seconds'] for r in rows):.1f} | {failed} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one process and CPU core each)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a model argument (YAML value), e.g. --set lr=0.002, to try a variant")
    args = parser.parse_args()
    overrides = {name: yaml.safe_load(value) for name, _, value in (s.partition("=") for s in args.set)}
    jobs = [(c, s, overrides) for c in args.configs for s in range(args.first_seed, args.first_seed + args.seeds)]
    start, results = time.perf_counter(), []
    with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        for r in pool.imap_unordered(one_run, jobs):
            results.append(r)
            print(f"{r['config']} seed {r['seed']}: solved {r['solved']} at {r['env_steps']} env steps, "
                  f"last100 {r['last100']:.1f}, {r['seconds']:.1f} s", flush=True)
    print(f"\nseeds {args.first_seed}-{args.first_seed + args.seeds - 1}, overrides {overrides or 'none'}, torch {torch.__version__}, "
          f"{args.jobs} job(s), {time.perf_counter() - start:.0f} s in all\n")
    print(table(results, args.configs))


if __name__ == "__main__":
    main()
