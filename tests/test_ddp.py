"""Two-process CPU DDP (gloo) through Lightning's own strategy, as users run it.

Each run launches tests/ddp_worker.py, which Lightning re-launches once per rank.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest
import torch

from pg_lightning import PPO

WORKER = Path(__file__).with_name("ddp_worker.py")


def run_worker(tmp_path, algorithm, devices=2, num_envs=2, epochs=5, uneven=False):
    args = [sys.executable, str(WORKER), str(tmp_path), algorithm, str(devices), str(num_envs), str(epochs)]
    if uneven:
        args.append("--uneven")
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(devices)]
    with open(tmp_path / "logs/version_0/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return ranks, rows


@pytest.mark.parametrize("algorithm", ["reinforce", "ppo"])
def test_two_ranks_collect_different_episodes_and_end_with_identical_weights(tmp_path, algorithm):
    # rank 0 plays 10-step episodes, rank 1 up to 300: uneven batches must not hang
    ranks, rows = run_worker(tmp_path, algorithm, uneven=True)
    assert ranks[0]["world"] == 2
    assert ranks[0]["first"] != ranks[1]["first"]  # distinct env seeds per rank
    assert ranks[0]["params"] == ranks[1]["params"]  # DDP averaged the same gradients
    assert ranks[0]["steps"] != ranks[1]["steps"]
    total = ranks[0]["steps"] + ranks[1]["steps"]
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] == total  # global counters on every rank
    assert float(rows[-1]["train/env_steps"]) == total  # rank 0 logs the global count
    assert len(rows) == 5


def test_one_and_two_processes_count_env_steps_the_same_way(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, rows_one = run_worker(tmp_path / "one", "a2c", devices=1, num_envs=4)
    two, rows_two = run_worker(tmp_path / "two", "a2c", devices=2, num_envs=2)
    # the same total batch (4 envs x 16 steps per update): every real transition is counted once
    assert float(rows_one[-1]["train/env_steps"]) == one[0]["steps"]
    assert float(rows_two[-1]["train/env_steps"]) == two[0]["steps"] + two[1]["steps"]
    # at most one autoreset step per env per finished episode is not a transition
    for count in (one[0]["steps"], two[0]["steps"] + two[1]["steps"]):
        assert 5 * 4 * 16 * 0.9 <= count <= 5 * 4 * 16


def test_a_ddp_checkpoint_restores_every_ranks_collector(tmp_path):
    run_worker(tmp_path, "ppo", epochs=2)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    processes = checkpoint["pg_lightning"]["processes"]
    assert len(processes) == 2
    assert processes[0]["collector"]["seed"] == 3 and processes[1]["collector"]["seed"] == 3 + 2
    assert processes[0]["collector"]["env_rng"] != processes[1]["collector"]["env_rng"]
    gymnasium.register("UnevenCartPole-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv",
                       max_episode_steps=300)
    module = PPO.load_from_checkpoint(tmp_path / "last.ckpt")
    assert module.agents[0].collector_state == processes[0]["collector"]  # a single process resumes rank 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_module_trains_on_the_gpu(quiet_trainer_kwargs):
    import lightning as L
    from helpers import DevicesSeen

    module, seen = PPO(seed=0, n_steps=16), DevicesSeen()
    quiet_trainer_kwargs.update(max_epochs=2, accelerator="gpu", devices=1, callbacks=[seen])
    L.Trainer(**quiet_trainer_kwargs).fit(module)
    assert seen.types == {"cuda"}
    assert module.env_steps > 0
