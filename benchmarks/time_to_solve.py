"""Seconds and env steps to solve a config, per seed and as medians, with a time breakdown.

Solved = mean return of the last 100 finished training episodes ≥ the env's reward threshold
(475 for CartPole-v1). Seconds are counted after imports (env and model construction included);
"process" adds this process's start-up and imports. One torch thread.

    python benchmarks/time_to_solve.py configs/cartpole_ppo.yaml --seeds 5

``--reference "SCRIPT ARGS"`` (repeatable) also runs a yardstick of ``../shared/reference`` (which
takes ``--seed N --quiet`` and prints a JSON line last) on the same seeds, one process per seed
after ours, and prints the ratios: median time to solve, and time per env step (steps/s).
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import lightning as L  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from pg_lightning import StopWhenSolved  # noqa: E402
from pg_lightning.collector import Collector  # noqa: E402
from pg_lightning.modules import PolicyGradient  # noqa: E402
from pg_lightning.registry import model_from_config  # noqa: E402

IMPORTS_DONE = time.perf_counter()


class Stopwatch:
    """Accumulates wall time of wrapped methods (collection, updates, logging) by category.

    Categories may nest (logging happens inside the update); a category already running is not
    counted twice.
    """

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._running: set[str] = set()

    @contextmanager
    def measure(self, category: str):
        if category in self._running:
            yield
            return
        self._running.add(category)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[category] += time.perf_counter() - start
            self._running.discard(category)

    def wrap(self, cls, name: str, category: str) -> None:
        original = getattr(cls, name)

        def timed(*args, **kwargs):
            with self.measure(category):
                return original(*args, **kwargs)

        setattr(cls, name, timed)


def solved_settings(config: str) -> dict:
    """The config's ``solved:`` group (its StopWhenSolved threshold), as train.py would apply it."""
    with open(config) as f:
        return yaml.safe_load(f).get("solved") or {}


def run(config: str, seed: int, overrides: dict, watch: Stopwatch) -> dict:
    """Train ``config``'s model (with ``overrides`` of its arguments) on ``seed`` until solved or out of budget."""
    watch.seconds.clear()
    start = time.perf_counter()
    model = model_from_config(config, **{**overrides, "seed": seed})
    solved = StopWhenSolved(**solved_settings(config))
    trainer = L.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, callbacks=[solved],
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model)
    total = time.perf_counter() - start
    # end_update runs inside the update; report it on its own
    updates = watch.seconds["update"] - watch.seconds["logging"]
    return {
        "seed": seed,
        "solved": solved.solved_at is not None,
        "threshold": solved.threshold,
        "last100": model.return_last100,
        "env_steps": model.env_steps,
        "seconds": total,
        "steps_per_second": model.env_steps / total,
        "collection": watch.seconds["collection"],
        "collection_us": watch.seconds["collection"] / model.env_steps * 1e6,
        "updates": updates,
        "logging": watch.seconds["logging"],
        "other": total - watch.seconds["collection"] - watch.seconds["update"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+N-1")
    parser.add_argument("--max-env-steps", type=int, default=None, help="override the budget")
    parser.add_argument("--reference", action="append", default=[],
                        help='a yardstick and its arguments, e.g. "../shared/reference/limit/reinforce_fast.py" (repeatable)')
    args = parser.parse_args()
    torch.set_num_threads(1)
    watch = Stopwatch()
    watch.wrap(Collector, "episodes", "collection")
    watch.wrap(Collector, "rollout", "collection")
    watch.wrap(PolicyGradient, "end_update", "logging")  # counting, statistics and metrics
    for cls in PolicyGradient.__subclasses__() + [c for s in PolicyGradient.__subclasses__() for c in s.__subclasses__()]:
        if "training_step" in vars(cls):
            watch.wrap(cls, "training_step", "update")
    watch.wrap(PolicyGradient, "training_step", "update")

    results = []
    header = f"{'seed':>4} {'solved':>6} {'env steps':>10} {'s':>7} {'steps/s':>8} {'collect':>8} {'update':>7} {'log':>6} {'other':>6}"
    print(f"{args.config}  (torch {torch.__version__}, lightning {L.__version__}, 1 thread)")
    print(header)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = run(args.config, seed, {"max_env_steps": args.max_env_steps} if args.max_env_steps else {}, watch)
        results.append(r)
        print(f"{r['seed']:>4} {str(r['solved']):>6} {r['env_steps']:>10} {r['seconds']:>7.2f} "
              f"{r['steps_per_second']:>8.0f} {r['collection']:>8.2f} {r['updates']:>7.2f} "
              f"{r['logging']:>6.2f} {r['other']:>6.2f}", flush=True)
    med = lambda k: statistics.median(r[k] for r in results)  # noqa: E731
    print(f"median: solved {sum(r['solved'] for r in results)}/{len(results)}, "
          f"{med('env_steps'):.0f} env steps, {med('seconds'):.2f} s after imports "
          f"(imports {IMPORTS_DONE - PROCESS_START:.2f} s), {med('steps_per_second'):.0f} steps/s; "
          f"collection {med('collection'):.2f} s, updates {med('updates'):.2f} s, "
          f"logging {med('logging'):.2f} s, other {med('other'):.2f} s; collection {med('collection_us'):.1f} µs per env step")
    print(f"whole process: {time.perf_counter() - PROCESS_START:.1f} s for {len(results)} runs")
    for reference in args.reference:
        compare(reference, [r["seed"] for r in results], med("seconds"), med("steps_per_second"), med("collection_us"))


def compare(reference: str, seeds: list[int], our_seconds: float, our_rate: float, our_collection_us: float) -> None:
    """Run the yardstick on ``seeds`` and print its medians and our ratios to them."""
    runs = []
    for seed in seeds:
        out = subprocess.run([sys.executable, *shlex.split(reference), "--seed", str(seed), "--quiet"],
                             capture_output=True, text=True, check=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    solved = sum(r["solved"] for r in runs)
    seconds = statistics.median(r["solve_s"] if r["solved"] else r["train_s"] for r in runs)
    rate = statistics.median(r["sps"] for r in runs)
    steps = statistics.median(r["solve_steps"] or r["total_steps"] for r in runs)
    print(f"reference {reference}: solved {solved}/{len(runs)}, median {steps:.0f} env steps, "
          f"{seconds:.2f} s after imports, {rate:.0f} steps/s")
    print(f"ratio ours / reference: time to solve {our_seconds / seconds:.2f}x, time per env step {rate / our_rate:.2f}x")
    if all("collect_us_per_step" in r for r in runs):
        collection_us = statistics.median(r["collect_us_per_step"] for r in runs)
        print(f"collection per env step: ours {our_collection_us:.1f} µs, reference {collection_us:.1f} µs "
              f"({our_collection_us / collection_us:.2f}x)")


if __name__ == "__main__":
    main()
