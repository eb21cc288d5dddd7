"""Share agents on the Hugging Face Hub, as rl-zoo users know it (needs ``pip install 'pg_lightning[hub]'``).

    pg-lightning push CKPT --repo-id USER/NAME [--episodes 10] [--folder-only]
    python -m pg_lightning.play hf://USER/NAME
    pg_lightning.load_from_hub("USER/NAME")

``push`` writes a Hub-ready folder — ``README.md`` (a model card whose ``model-index`` names the
env, the algorithm and the mean ± std return of a deterministic evaluation), ``config.yaml`` (the
checkpoint's hyperparameters as a ``--config`` file), ``model.ckpt``, ``results.json`` and
``replay.mp4`` (with ``moviepy``) — and uploads it with ``huggingface_hub``. A checkpoint from the
Hub is untrusted: it is always loaded with ``weights_only=True`` and checked before anything is built.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pg_lightning.errors import ConfigError
from pg_lightning.hub_download import CHECKPOINT, check_repo_id, hub_module
from pg_lightning.registry import add_checkpoint_arguments

CONFIG, CARD, RESULTS, VIDEO = "config.yaml", "README.md", "results.json", "replay.mp4"


def _plain(value: Any) -> Any:
    """``value`` as YAML-safe plain data (tuples as lists, other objects as their string)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def model_card(repo_id: str, algorithm: str, env_id: str, returns: list[float], seed: int, video: bool) -> str:
    """The ``README.md`` of a pushed agent: ``model-index`` metadata (rl-zoo's layout) and usage."""
    import numpy as np

    hf = hub_module()
    mean, std = float(np.mean(returns)), float(np.std(returns))
    data = hf.ModelCardData(
        library_name="pg_lightning",
        tags=["reinforcement-learning", "deep-reinforcement-learning", "pg_lightning", algorithm, env_id],
        model_name=algorithm,
        eval_results=[hf.EvalResult(
            task_type="reinforcement-learning", task_name="reinforcement-learning",
            dataset_type=env_id, dataset_name=env_id,
            metric_type="mean_reward", metric_name="mean_reward", metric_value=f"{mean:.2f} +/- {std:.2f}",
        )],
    )
    episodes = len(returns)
    body = f"""
# {algorithm} agent playing {env_id}

A pg_lightning {algorithm} agent for `{env_id}`. Deterministic evaluation
(argmax / Gaussian mean): mean return **{mean:.2f} ± {std:.2f}** over {episodes} episodes, episode
`k` reset with seed `{seed} + k`.{" The replay is `replay.mp4`." if video else ""}

## Usage

```bash
pip install 'pg_lightning[hub]'
python -m pg_lightning.play hf://{repo_id} --episodes {episodes} --seed {seed}   # the returns above
```

```python
import pg_lightning

module = pg_lightning.load_from_hub("{repo_id}")  # weights_only=True: a Hub file is untrusted
```

Train it again: `pg-lightning --config config.yaml` (the checkpoint's hyperparameters).
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def write_folder(
    checkpoint: str | Path, folder: str | Path, repo_id: str, episodes: int = 10, seed: int = 0,
    video: bool = True, trusted: bool = False, allow: Sequence[str] = (), seed_index: int = 0,
) -> Path:
    """Write the Hub folder of ``checkpoint`` (of a many-seeds checkpoint, seed index
    ``seed_index`` as a one-seed checkpoint); ``video`` is skipped with a note when moviepy is
    missing. Returns the folder."""
    import torch

    from pg_lightning import checkpoints
    from pg_lightning.evaluation import evaluate
    from pg_lightning.registry import load_module
    from pg_lightning.seed_checkpoints import extract_seed, seed_count

    check_repo_id(repo_id)
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    hub_module()  # before the evaluation, not after
    module = load_module(checkpoint, trusted=trusted, allow=allow, seed_index=seed_index)
    hp, algorithm = module.hparams, type(module).__name__
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = checkpoints.read(checkpoint, trusted)
    if seed_count(saved) > 1:
        torch.save(extract_seed(saved, seed_index), folder / CHECKPOINT)
    else:
        shutil.copyfile(checkpoint, folder / CHECKPOINT)
    config = {"model": {"class_path": f"{type(module).__module__}.{algorithm}", "init_args": _plain(dict(hp))}}
    (folder / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    results = evaluate(module.policy, hp.env_id, episodes, seed, hp.env_kwargs, wrappers=hp.wrappers)
    returns = [float(r) for r in results["returns"]]
    (folder / RESULTS).write_text(json.dumps({
        "algorithm": algorithm, "env_id": hp.env_id, "deterministic": True, "seed": seed,
        "returns": returns, "lengths": [int(n) for n in results["lengths"]],
    }, indent=1))
    if video and importlib.util.find_spec("moviepy") is None:
        print("note: no replay video (needs moviepy: pip install 'pg_lightning[video]')", file=sys.stderr)
        video = False
    if video:
        from pg_lightning.play import play

        play(folder / CHECKPOINT, episodes=1, video=folder / VIDEO, seed=seed, trusted=trusted, allow=allow)
    (folder / CARD).write_text(model_card(repo_id, algorithm, hp.env_id, returns, seed, video))
    return folder


def upload(folder: str | Path, repo_id: str, private: bool = False, commit_message: str | None = None) -> str:
    """Create ``repo_id`` (if new) and upload ``folder`` to it; the repo's URL."""
    api = hub_module().HfApi()
    api.create_repo(repo_id=check_repo_id(repo_id), repo_type="model", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                      commit_message=commit_message or "pg_lightning push")
    return f"https://huggingface.co/{repo_id}"


def main(argv: list[str] | None = None) -> int:
    """``pg-lightning push``: write the Hub folder of a checkpoint and upload it."""
    parser = argparse.ArgumentParser(prog="pg-lightning push", description=main.__doc__.split(":", 1)[1].strip())
    parser.add_argument("checkpoint", help="a .ckpt written by Reinforce, A2C or PPO")
    parser.add_argument("--repo-id", required=True, help="the Hub model repo, USER/NAME")
    parser.add_argument("--folder", help="where to write the folder (default: hub/USER/NAME)")
    parser.add_argument("--episodes", type=int, default=10, help="deterministic evaluation episodes (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="episode k resets with seed + k (default 0)")
    parser.add_argument("--no-video", dest="video", action="store_false", help="no replay.mp4")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--folder-only", "--dry-run", dest="upload", action="store_false",
                        help="write the folder, upload nothing")
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    folder = Path(args.folder or Path("hub", *args.repo_id.split("/")))
    try:
        write_folder(args.checkpoint, folder, args.repo_id, args.episodes, args.seed, args.video, args.trust_checkpoint,
                     args.allow, args.seed_index)
        result = json.loads((folder / RESULTS).read_text())
        returns = result["returns"]
        mean = sum(returns) / len(returns)
        std = (sum((r - mean) ** 2 for r in returns) / len(returns)) ** 0.5
        print(f"{result['algorithm']} on {result['env_id']}: return {mean:.2f} ± {std:.2f} over {len(returns)} "
              f"deterministic episodes; folder {folder}")
        if args.upload:
            print(f"uploaded to {upload(folder, args.repo_id, args.private)}")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
