"""Many seeds in one process (``--model.num_seeds K``) against one-seed processes: issue 24's speed targets.

Every time is a whole process (interpreter start and imports included): ``train.py`` run as a
subprocess with ``--trainer.logger false --trainer.enable_progress_bar false
--trainer.enable_checkpointing false``, train.py's torch threads (1 for one seed, every core for many).
For each target it
prints the K-seed process's seconds, the one-seed process's (median of ``--one-seed-runs``
processes on the K run's first seeds, the first one before the K run and the rest after it), the
ratio, the target and whether it is met, and from the K run's ``summary.json`` (written into its
``--trainer.default_root_dir``, the run folder without a logger) the seeds solved, the median
steps to solve and the IQM of the last-100 return.

Targets (issue 24):
  cartpole_ppo        16 seeds, until solved:      K-seed process <= 3x one seed's process
  cartpole_reinforce  16 seeds, until solved:      <= 4x one seed's process
  lunarlander_ppo     8 seeds x 300k env steps:    <= 0.4x the time of 8 one-seed processes,
                                                    and <= 1/4 of Stable-Baselines3's time for 8 seeds
  halfcheetah_ppo     4 seeds x 300k env steps:    <= 0.5x the time of 4 one-seed processes

The CartPole targets stop each seed when solved (the config's threshold; StopWhenSolved judges
each seed). The 300k-step targets run every seed for the full 300k steps (``--solved.threshold
1e9``), as SB3 does, so the comparison is of the same work; ``--stop-when-solved`` keeps the
config's threshold there too. "The time of K one-seed processes" is the sum of K measured ones
when ``--one-seed-runs`` >= K, else K x the median of those measured (said so in the output).
SB3 (``pip install stable-baselines3``) runs ``benchmarks/sb3_compare.py``'s ``sb3_ppo`` (the
config's hyperparameters, ``DummyVecEnv`` of ``Monitor`` envs) for the same env steps, one
process per seed as SB3 users run seeds; ``--sb3-runs`` of them (default 1), scaled as above.

``--profile`` then runs each selected K-seed fit once more in this process with timers wrapped
around the collector (``rollout`` / ``episodes``), the losses' forward, ``torch.autograd.backward``,
the gradient guard and clip, Adam's step and the per-seed bookkeeping (``end_update``), and prints
where the time goes (each category exclusive of the ones it calls; the rest is Lightning's loop,
callbacks and glue).

    python benchmarks/many_seeds.py                                   # (a) and (b)
    python benchmarks/many_seeds.py --only cartpole_ppo --seeds 4 --one-seed-runs 1 --profile
    python benchmarks/many_seeds.py --only lunarlander_ppo,halfcheetah_ppo --sb3
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_checkpointing", "false"]


@dataclass
class Target:
    name: str
    config: str
    seeds: int
    limit: float  # the K-seed process's time over the yardstick (one seed's, or K one-seed runs')
    versus: str  # "one": one seed's process; "all": K one-seed processes
    max_env_steps: int | None = None  # None: the config's budget, stop each seed when solved
    sb3_limit: float | None = None  # ours over SB3's time for the same K seeds


TARGETS = {
    t.name: t for t in [
        Target("cartpole_ppo", "configs/cartpole_ppo.yaml", 16, 3.0, "one"),
        Target("cartpole_reinforce", "configs/cartpole_reinforce.yaml", 16, 4.0, "one"),
        Target("lunarlander_ppo", "configs/lunarlander_ppo.yaml", 8, 0.4, "all", 300_000, sb3_limit=0.25),
        Target("halfcheetah_ppo", "configs/halfcheetah_ppo.yaml", 4, 0.5, "all", 300_000),
    ]
}


def config_of(path: str) -> dict:
    import yaml

    with open(ROOT / path) as f:
        return yaml.safe_load(f)


def train_args(target: Target, seed: int, num_seeds: int, folder: str, stop_when_solved: bool) -> list[str]:
    """``train.py`` arguments for seeds ``seed`` .. ``seed + num_seeds - 1`` of ``target``."""
    args = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / target.config),
            "--model.seed", str(seed), "--model.num_seeds", str(num_seeds),
            "--trainer.default_root_dir", folder, *QUIET]
    if target.max_env_steps is not None:
        args += ["--model.max_env_steps", str(target.max_env_steps)]
    threshold = (config_of(target.config).get("solved") or {}).get("threshold")
    if target.max_env_steps is not None and not stop_when_solved:
        args += ["--solved.threshold", "1e9"]  # the same work as SB3: every seed runs its whole budget
    elif threshold is not None:
        args += ["--solved.threshold", str(threshold)]
    return args


def run_process(args: list[str], log) -> tuple[float, str]:
    """Seconds of the whole process and its stdout; stops the benchmark if it fails."""
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        log(f"FAILED ({done.returncode}): {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        raise SystemExit(1)
    return seconds, done.stdout


DONE = re.compile(r"Done: ([\d,]+) env steps.*")


def done_line(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith("Done:")]
    return lines[-1] if lines else "(no Done line)"


def one_seed(target: Target, seed: int, stop_when_solved: bool, log) -> dict:
    with tempfile.TemporaryDirectory(prefix="many_seeds_") as folder:
        seconds, out = run_process(train_args(target, seed, 1, folder, stop_when_solved), log)
    line = done_line(out)
    steps = DONE.match(line)
    solved = re.search(r"solved at ([\d,]+) env steps", line)
    ret = re.search(r"last-100 return (-?[\d.]+)", line)
    record = {"seed": seed, "seconds": seconds, "env_steps": int(steps.group(1).replace(",", "")) if steps else None,
              "solved_at": int(solved.group(1).replace(",", "")) if solved else None,
              "return_last100": float(ret.group(1)) if ret else None}
    log(f"  one seed {seed}: {seconds:6.1f} s process, {record['env_steps']} env steps, "
        f"solved at {record['solved_at']}, last-100 return {record['return_last100']}")
    return record


def many_seeds(target: Target, seed: int, k: int, stop_when_solved: bool, log) -> dict:
    with tempfile.TemporaryDirectory(prefix="many_seeds_") as folder:
        seconds, out = run_process(train_args(target, seed, k, folder, stop_when_solved), log)
        summary = json.loads((Path(folder) / "summary.json").read_text())
    log(f"  {k} seeds: {seconds:6.1f} s process; {done_line(out)}")
    return {"seconds": seconds, "summary": summary}


def sb3_seed(target: Target, seed: int, log) -> dict | None:
    """One SB3 process (imports included) for ``target``'s env steps with the config's hyperparameters."""
    code = ("import sys, json, yaml; sys.path.insert(0, 'benchmarks'); import torch; torch.set_num_threads(1); "
            "from sb3_compare import sb3_ppo; "
            f"init = yaml.safe_load(open({target.config!r}))['model']['init_args']; "
            f"s, r = sb3_ppo(init, {target.max_env_steps}, {seed}); print(json.dumps({{'train_s': s, 'return': r}}))")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        log(f"  SB3 seed {seed}: failed ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})")
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"  SB3 seed {seed}: {seconds:6.1f} s process ({result['train_s']:.1f} s training), "
        f"last-100 return {result['return']:.1f}")
    return {"seconds": seconds, **result}


def yardstick(times: list[float], k: int, versus: str) -> tuple[float, str]:
    """The time the K-seed process is compared with, and how it was got."""
    if versus == "one":
        return statistics.median(times), f"median of {len(times)} one-seed processes"
    if len(times) >= k:
        return sum(times[:k]), f"sum of {k} one-seed processes"
    return k * statistics.median(times), f"{k} x median of {len(times)} one-seed processes"


def solved_cell(result: dict, args) -> str:
    a = result["aggregate"]
    if TARGETS[result["target"]].max_env_steps is not None and not args.stop_when_solved:
        return f"off (full budget; IQM return {a['iqm_return_last100']:.1f})"
    return f"{a['num_solved']}/{a['num_seeds']}"


def fmt_steps(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def measure(target: Target, k: int, runs: int, args, log) -> dict:
    seed0 = int(config_of(target.config)["model"]["init_args"].get("seed", 0))
    budget = f"{target.max_env_steps:,} env steps per seed" if target.max_env_steps else "until solved or the config's budget"
    full = target.max_env_steps is not None and not args.stop_when_solved
    log(f"\n== {target.name}: {k} seeds (seeds {seed0}-{seed0 + k - 1}), {budget}"
        f"{', StopWhenSolved off' if full else ''}; {runs} one-seed process(es)")
    singles = [one_seed(target, seed0, args.stop_when_solved, log)]  # alternate: one, K, one, ...
    many = many_seeds(target, seed0, k, args.stop_when_solved, log)
    singles += [one_seed(target, seed0 + i, args.stop_when_solved, log) for i in range(1, runs)]
    base, how = yardstick([s["seconds"] for s in singles], k, target.versus)
    ratio = many["seconds"] / base
    aggregate = many["summary"]["aggregate"]
    result = {"target": target.name, "k": k, "k_seconds": many["seconds"], "one_seed_median": statistics.median(
        s["seconds"] for s in singles), "yardstick": base, "how": how, "ratio": ratio, "limit": target.limit,
        "met": ratio <= target.limit, "aggregate": aggregate, "singles": singles}
    solved_singles = [s["solved_at"] for s in singles if s["solved_at"] is not None]
    log(f"  -> {k}-seed process {many['seconds']:.1f} s; one-seed process median {result['one_seed_median']:.1f} s; "
        f"yardstick ({how}) {base:.1f} s")
    log(f"  -> ratio {ratio:.2f} (target <= {target.limit:g}): {'MET' if result['met'] else 'MISSED'}; "
        f"{k} seeds: {aggregate['num_solved']}/{aggregate['num_seeds']} solved, median steps to solve "
        f"{fmt_steps(aggregate['median_steps_to_solve'])} (one-seed runs: {len(solved_singles)}/{len(singles)} solved, "
        f"median {fmt_steps(statistics.median(solved_singles) if solved_singles else None)}), "
        f"IQM last-100 return {aggregate['iqm_return_last100']:.1f} {aggregate['iqm_ci95']}"
        f" (seconds per seed {many['seconds'] / k:.2f} vs {result['one_seed_median']:.2f})")
    if target.sb3_limit is not None and args.sb3:
        sb3 = [r for r in (sb3_seed(target, seed0 + i, log) for i in range(min(args.sb3_runs, k))) if r]
        if sb3:
            sb3_base, sb3_how = yardstick([r["seconds"] for r in sb3], k, "all")
            result.update(sb3_seconds=sb3_base, sb3_ratio=many["seconds"] / sb3_base,
                          sb3_met=many["seconds"] / sb3_base <= target.sb3_limit)
            log(f"  -> SB3 ({sb3_how}) {sb3_base:.1f} s; ratio {result['sb3_ratio']:.2f} "
                f"(target <= {target.sb3_limit:g}): {'MET' if result['sb3_met'] else 'MISSED'}")
        else:
            log("  -> SB3: not measured (not installed or failed)")
    elif target.sb3_limit is not None:
        log(f"  -> SB3 (target <= {target.sb3_limit:g}): not measured (pass --sb3)")
    return result


# ---- where the time goes ------------------------------------------------------------------------
class ExclusiveStopwatch:
    """Wall time of wrapped functions by category, each exclusive of the wrapped calls inside it."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [category, start, seconds of wrapped calls inside]

    @contextmanager
    def measure(self, category: str):
        if any(frame[0] == category for frame in self._stack):  # a category inside itself counts once
            yield
            return
        frame = [category, time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = time.perf_counter() - frame[1]
            self.seconds[category] += elapsed - frame[2]
            self.calls[category] += 1
            if self._stack:
                self._stack[-1][2] += elapsed

    def wrap(self, owner, name: str, category: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            with self.measure(category):
                return original(*args, **kwargs)

        timed.__wrapped__ = original
        setattr(owner, name, timed)


WATCH: ExclusiveStopwatch | None = None  # the profile's timers, wrapped around the methods once


def profile(target: Target, k: int, args, log) -> None:
    """One K-seed fit in this process, with its time split by category."""
    start = time.perf_counter()
    import lightning as L
    import torch

    from pg_lightning import StopWhenSolved
    from pg_lightning.cli import default_threads
    from pg_lightning.collection_worker import RemoteCollector
    from pg_lightning.collector import Collector
    from pg_lightning.gradient_step import GradientStep
    from pg_lightning.modules import PolicyGradient
    from pg_lightning.optim import Adam, StackedAdam
    from pg_lightning.registry import model_from_config
    from pg_lightning.seed_stack import SeedStack

    imports = time.perf_counter() - start
    torch.set_num_threads(default_threads(k))  # as train.py sets them
    global WATCH
    if WATCH is None:  # wrap once per process
        WATCH = watch = ExclusiveStopwatch()
        watch.wrap(Collector, "rollout", "collection (envs + policy sampling)")
        watch.wrap(Collector, "episodes", "collection (envs + policy sampling)")
        watch.wrap(RemoteCollector, "finish", "waiting for the collection worker")
        classes, todo = [], [PolicyGradient]
        while todo:
            cls = todo.pop()
            classes.append(cls)
            todo += cls.__subclasses__()
        for cls in classes:
            for name in ("compute_losses", "minibatch_losses", "rollout_data", "stacked_losses", "stacked_rollout_data",
                         "loss_terms"):
                if name in vars(cls):
                    watch.wrap(cls, name, "forward + losses")
        watch.wrap(PolicyGradient, "end_update", "per-seed bookkeeping (statistics, metrics)")
        watch.wrap(PolicyGradient, "end_seeds_update", "per-seed bookkeeping (statistics, metrics)")
        watch.wrap(torch.autograd, "backward", "backward")
        watch.wrap(GradientStep, "guard_and_clip", "gradient guard + clip")
        watch.wrap(Adam, "step", "Adam step")
        watch.wrap(StackedAdam, "step", "Adam step")
        watch.wrap(SeedStack, "evaluate", "forward + losses")
        watch.wrap(SeedStack, "value", "forward + losses")
        watch.wrap(SeedStack, "guard_and_clip", "gradient guard + clip")
    watch = WATCH
    watch.seconds.clear()
    watch.calls.clear()
    config = config_of(target.config)
    overrides = {"num_seeds": k}
    if target.max_env_steps is not None:
        overrides["max_env_steps"] = target.max_env_steps
    callbacks = []
    if target.max_env_steps is None or args.stop_when_solved:
        callbacks.append(StopWhenSolved(**(config.get("solved") or {})))
    with tempfile.TemporaryDirectory(prefix="many_seeds_") as folder:
        fit_start = time.perf_counter()
        model = model_from_config(str(ROOT / target.config), **overrides)
        trainer = L.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, callbacks=callbacks,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            default_root_dir=folder)
        trainer.fit(model)
        total = time.perf_counter() - fit_start
    measured = sum(watch.seconds.values())
    log(f"\n== profile {target.name}, {k} seeds in this process: fit {total:.1f} s "
        f"(imports here {imports:.1f} s, already partly imported), {model.env_steps:,} env steps over all seeds, "
        f"{trainer.current_epoch:,} updates")
    for category, seconds in sorted(watch.seconds.items(), key=lambda kv: -kv[1]):
        log(f"  {category:<45} {seconds:7.2f} s  {100 * seconds / total:5.1f}%  ({watch.calls[category]:,} calls)")
    log(f"  {'the rest (Lightning loop, callbacks, glue)':<45} {total - measured:7.2f} s  "
        f"{100 * (total - measured) / total:5.1f}%")
    here = watch.seconds["collection (envs + policy sampling)"] / model.env_steps * 1e6
    log(f"  collection here per env step of all seeds {here:.1f} µs "
        "(with a collection worker, half the seeds' envs step in it, beside this process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", default="cartpole_ppo,cartpole_reinforce",
                        help=f"comma-separated targets from {', '.join(TARGETS)} (or 'all')")
    parser.add_argument("--seeds", type=int, default=None, help="K for every target (default: the issue's)")
    parser.add_argument("--one-seed-runs", type=int, default=3, help="one-seed processes per target")
    parser.add_argument("--stop-when-solved", action="store_true",
                        help="the 300k-step targets stop each seed when solved too")
    parser.add_argument("--sb3", action="store_true", help="also time SB3 where a target has an SB3 ratio")
    parser.add_argument("--sb3-runs", type=int, default=1, help="SB3 processes (one seed each)")
    parser.add_argument("--profile", action="store_true", help="then split each K-seed fit's time")
    parser.add_argument("--profile-only", action="store_true", help="only the profile")
    args = parser.parse_args()
    names = list(TARGETS) if args.only == "all" else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")

    def log(line: str) -> None:
        print(line, flush=True)

    results = []
    if not args.profile_only:
        for name in names:
            target = TARGETS[name]
            results.append(measure(target, args.seeds or target.seeds, args.one_seed_runs, args, log))
        log("\n| target | K | K-seed process s | one-seed process s (median) | yardstick | ratio | target | "
            "solved | median steps to solve |")
        log("|---|---|---|---|---|---|---|---|---|")
        for r in results:
            a = r["aggregate"]
            log(f"| {r['target']} | {r['k']} | {r['k_seconds']:.1f} | {r['one_seed_median']:.1f} | {r['how']}: "
                f"{r['yardstick']:.1f} s | {r['ratio']:.2f} | ≤ {r['limit']:g} {'met' if r['met'] else 'missed'} | "
                f"{solved_cell(r, args)} | {fmt_steps(a['median_steps_to_solve'])} |")
            if "sb3_ratio" in r:
                log(f"| {r['target']} vs SB3 | {r['k']} | {r['k_seconds']:.1f} | | SB3: {r['sb3_seconds']:.1f} s | "
                    f"{r['sb3_ratio']:.2f} | ≤ {TARGETS[r['target']].sb3_limit:g} "
                    f"{'met' if r['sb3_met'] else 'missed'} | | |")
    if args.profile or args.profile_only:
        for name in names:
            target = TARGETS[name]
            profile(target, args.seeds or target.seeds, args, log)


if __name__ == "__main__":
    main()
