"""One seed of a many-seeds checkpoint written out as an ordinary one-seed checkpoint.

A ``num_seeds=K`` run saves all K agents in one Lightning checkpoint: index 0 where a one-seed
module keeps it (``policy.*``, ``normalizer.*``, the entry's counters), index k >= 1 under
``seed_policies.{k-1}.*`` / ``seed_normalizers.{k-1}.*``, each index's counters, collector and RNG
in the entry's ``"seeds"`` list, and its optimizer state: row k of every ``[K, ...]`` tensor of a
``StackedAdam`` (seeds stacked into one table), or one Adam param group and one scheduler slot per
index (seeds of other networks).
:func:`extract_seed` turns index k into the checkpoint a one-seed run with seed ``seed + k``
would have written, so ``play``, ``export``, ``load_module`` and resuming take it unchanged.

``python -m pg_lightning.seed_checkpoints RUN.ckpt --seed-index 3 --output seed3.ckpt``
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from typing import Any

import torch

from pg_lightning import checkpoints
from pg_lightning.errors import ConfigError

# one-seed state_dict prefix -> where index k >= 1 keeps the same module in a K-seed checkpoint
SEED_MODULES = {"policy": "seed_policies", "normalizer": "seed_normalizers"}
# what a one-seed entry holds per run, which a K-seed entry keeps per seed in "seeds"
PER_RUN = ("env_steps", "episodes", "skipped_updates", "return_area", "processes", "shuffle_rng", "wandb_run_id", "seeds")
# scheduler state lists with one entry per param group (LambdaLR, MultiplicativeLR, ReduceLROnPlateau, CyclicLR)
PER_GROUP = ("base_lrs", "_last_lr", "lr_lambdas", "min_lrs", "max_lrs")


def seed_count(checkpoint: dict[str, Any]) -> int:
    """How many seeds the checkpoint holds: ``hyper_parameters["num_seeds"]``, 1 when absent."""
    hparams = checkpoint.get("hyper_parameters")
    count = hparams.get("num_seeds", 1) if isinstance(hparams, dict) else 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"checkpoint's num_seeds is {count!r}, not a positive integer")
    return count


def extract_seed(checkpoint: dict[str, Any], index: int) -> dict[str, Any]:
    """Index ``index`` of a K-seed checkpoint as a new one-seed checkpoint (the input is not changed).

    Its weights become ``policy.*`` / ``normalizer.*``, its Adam group and scheduler slot the only
    ones (parameters renumbered from 0, as a one-group optimizer numbers them), its counters,
    collector and shuffle RNG the entry's, and ``hyper_parameters`` say ``seed + index`` and
    ``num_seeds=1``. The W&B run is not carried (that run holds all seeds' history). A one-seed
    checkpoint comes back as a copy for index 0; any other index is a ConfigError naming K.
    """
    count = seed_count(checkpoint)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ConfigError(
            f"seed index {index!r} is out of range: the checkpoint holds {count} seed"
            f"{'s' if count != 1 else ''} (indices 0..{count - 1})"
        )
    result = copy.deepcopy(checkpoint)  # ours to rewrite; tensors, collector states and all
    if count == 1:
        return result
    entry = checkpoints.entry_of(result, "checkpoint")
    seeds = entry.get("seeds")
    if not isinstance(seeds, list) or len(seeds) != count:
        raise ConfigError(f"checkpoint has num_seeds={count} but its entry's 'seeds' list holds "
                          f"{len(seeds) if isinstance(seeds, list) else 'no'} seeds")
    result["hyper_parameters"] = _hyperparameters(result["hyper_parameters"], index, seeds[index])
    result["state_dict"] = _state_dict(result.get("state_dict"), index, count)
    if "optimizer_states" in result:
        lr_scale = _annealed(result["hyper_parameters"], seeds[index]["counters"].get("env_steps", 0))
        result["optimizer_states"] = [_optimizer_state(state, index, count, lr_scale) for state in result["optimizer_states"]]
    if "lr_schedulers" in result:
        result["lr_schedulers"] = [_scheduler_state(state, index, count) for state in result["lr_schedulers"]]
    result[checkpoints.KEY] = _entry(entry, seeds[index], index)
    return result


def _hyperparameters(hparams: dict[str, Any], index: int, seed_state: dict[str, Any]) -> dict[str, Any]:
    """The arguments of the one-seed run that index ``index`` is: seed ``seed + index``, one seed."""
    seed = hparams.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"checkpoint's seed is {seed!r}; a many-seeds checkpoint needs an integer seed")
    if isinstance(seed_state, dict) and seed_state.get("seed", seed + index) != seed + index:
        raise ConfigError(f"checkpoint's seed index {index} records seed {seed_state['seed']}, "
                          f"expected {seed} + {index} = {seed + index}")
    return {**hparams, "seed": seed + index, "num_seeds": 1}


def _state_dict(weights: Any, index: int, count: int) -> dict[str, torch.Tensor]:
    """Index ``index``'s weights under the one-seed names; every other seed's dropped, keys that
    belong to no seed kept. Its names and shapes must match index 0's, or the file is not K seeds."""
    if not isinstance(weights, dict):
        raise ConfigError("checkpoint has no 'state_dict'")
    seed_prefixes = tuple(f"{p}." for p in SEED_MODULES.values())
    own = tuple(f"{p}." for p in SEED_MODULES)
    shared = {k: v for k, v in weights.items() if not k.startswith(seed_prefixes + own)}
    first = {k: v for k, v in weights.items() if k.startswith(own)}
    if index == 0:
        return {**first, **shared}
    renamed = {}
    for name, stacked in SEED_MODULES.items():
        prefix = f"{stacked}.{index - 1}."
        renamed |= {f"{name}.{k.removeprefix(prefix)}": v for k, v in weights.items() if k.startswith(prefix)}
    if renamed.keys() != first.keys() or any(renamed[k].shape != first[k].shape for k in first):
        missing = sorted(first.keys() - renamed.keys()) or sorted(renamed.keys() - first.keys())
        detail = f"e.g. {missing[0]!r}" if missing else "shapes differ"
        raise ConfigError(f"checkpoint's seed index {index} weights do not match index 0's ({detail}); "
                          f"not a {count}-seed checkpoint")
    return {**renamed, **shared}


def _annealed(hparams: dict[str, Any], env_steps: int) -> float:
    """The factor ``anneal_lr`` had brought the seed's learning rate to (1 without it), as a
    one-seed run's scheduler leaves it in its optimizer."""
    budget = hparams.get("max_env_steps")
    if not hparams.get("anneal_lr") or not budget:
        return 1.0
    return 1.0 - min(env_steps / budget, 1.0)


def _optimizer_state(state: dict[str, Any], index: int, count: int, lr_scale: float) -> dict[str, Any]:
    """Seed ``index``'s Adam state: row ``index`` of a stacked one (its learning rate at
    ``lr_scale`` of the group's, where a one-seed scheduler leaves it), or param group ``index``
    alone, its parameters and their state renumbered from 0."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    per_param = state.get("state", {}) if isinstance(state, dict) else {}
    if isinstance(groups, list) and len(groups) == 1 and count > 1:  # StackedAdam: [K, ...] tensors
        rows = {p: {k: v[index].clone() for k, v in s.items()} for p, s in per_param.items()}  # own steps, not one shared
        return {**state, "state": rows, "param_groups": [{**groups[0], "lr": groups[0]["lr"] * lr_scale}]}
    if not isinstance(groups, list) or len(groups) != count:
        raise ConfigError(f"checkpoint's optimizer has {len(groups) if isinstance(groups, list) else 'no'} "
                          f"param groups; a {count}-seed checkpoint has one per seed")
    old = list(groups[index]["params"])
    return {
        **state,
        "state": {new: per_param[p] for new, p in enumerate(old) if p in per_param},
        "param_groups": [{**groups[index], "params": list(range(len(old)))}],
    }


def _scheduler_state(state: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """The scheduler's per-group lists reduced to entry ``index``; everything else as it was."""
    reduced = dict(state)
    for key in PER_GROUP:
        if key in state:
            values = state[key]
            if not isinstance(values, list) or len(values) != count:
                raise ConfigError(f"checkpoint's lr scheduler {key!r} has "
                                  f"{len(values) if isinstance(values, list) else 'no'} entries, not one per seed ({count})")
            reduced[key] = [values[index]]
    return reduced


def _entry(entry: dict[str, Any], seed_state: Any, index: int) -> dict[str, Any]:
    """The one-seed ``pg_lightning`` entry: index ``index``'s counters, collector and shuffle RNG."""
    if not isinstance(seed_state, dict) or not isinstance(seed_state.get("counters"), dict) or "collector" not in seed_state:
        raise ConfigError(f"checkpoint's 'seeds' entry {index} has no counters or collector state")
    result = {k: v for k, v in entry.items() if k not in PER_RUN and k not in seed_state["counters"]}
    result |= {**seed_state["counters"], "processes": [{"collector": seed_state["collector"]}], "wandb_run_id": None}
    if "shuffle_rng" in entry:  # PPO's minibatch order
        if "shuffle_rng" not in seed_state:
            raise ConfigError(f"checkpoint's 'seeds' entry {index} has no shuffle_rng")
        result["shuffle_rng"] = seed_state["shuffle_rng"]
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pg_lightning.seed_checkpoints",
        description="Write one seed of a many-seeds (num_seeds=K) checkpoint as an ordinary one-seed checkpoint.",
    )
    parser.add_argument("checkpoint", help="a .ckpt written by a run with --model.num_seeds K")
    parser.add_argument("--seed-index", type=int, required=True, help="which seed: 0..K-1 (seed + index)")
    parser.add_argument("--output", "-o", required=True, help="the one-seed .ckpt to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command on ``argv`` (default: the command line); bad inputs exit 2 with ``error: ...``."""
    args = _parser().parse_args(argv)
    try:
        checkpoint = checkpoints.read(args.checkpoint)
        count = seed_count(checkpoint)
        one = extract_seed(checkpoint, args.seed_index)
        torch.save(one, args.output)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    seed = (one.get("hyper_parameters") or {}).get("seed")
    print(f"wrote {args.output} (seed index {args.seed_index} of {count}: seed {seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
