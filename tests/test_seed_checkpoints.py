"""One seed of a many-seeds checkpoint written out as an ordinary one-seed checkpoint.

A K=3 checkpoint is built by hand the way a ``num_seeds=3`` module saves (a real 3-group Adam and
its LambdaLR after two steps), beside the three one-seed checkpoints that one-seed runs with
seeds 10, 11 and 12 would write (their own one-group Adam and LambdaLR, fed the same gradients).
Seed k extracted from the first must equal the k-th of the others, optimizer state included.
"""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pg_lightning import checkpoints
from pg_lightning.errors import ConfigError
from pg_lightning.seed_checkpoints import extract_seed, main, seed_count

ROOT = Path(__file__).resolve().parents[1]
SEED, K = 10, 3
LRS = [1e-2, 2e-2, 3e-2]  # a different learning rate per seed, so a wrong group or slot shows
LIGHTNING = {"epoch": 4, "global_step": 2, "pytorch-lightning_version": "2.5.0", "loops": {"fit_loop": {"x": 1}},
             "callbacks": {"RunCheckpoint": {"best_model_path": ""}}, "hparams_name": "kwargs"}


class Normalizer(nn.Module):
    """Running statistics as buffers, like pg_lightning's Normalizer."""

    def __init__(self, k: int):
        super().__init__()
        self.register_buffer("mean", torch.full((3,), float(k)))
        self.register_buffer("count", torch.tensor(100.0 + k))


def network() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def loss(policy: nn.Module, k: int, step: int) -> torch.Tensor:
    x = torch.arange(6.0).reshape(2, 3) * (k + 1) - step  # each seed its own data
    return (policy(x) ** 2).sum()


def schedule(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** epoch)


def entry(k: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seed k's counters and collector state, distinct for every seed."""
    counters = {"env_steps": 1000 * (k + 1), "episodes": 10 + k, "skipped_updates": k, "return_area": 1.5 * k}
    collector = {"observations": torch.full((2, 3), float(k)), "episode_returns": [float(k)] * 2,
                 "rng": torch.Generator().manual_seed(100 + k).get_state()}
    return counters, collector


def hparams(seed: int, num_seeds: int) -> dict[str, Any]:
    return {"env_id": "CartPole-v1", "seed": seed, "num_seeds": num_seeds, "n_steps": 16,
            "_class_path": "pg_lightning.modules.ppo.PPO"}


@pytest.fixture(scope="module")
def made() -> dict[str, Any]:
    """``{"many": the K=3 checkpoint, "one": [the one-seed checkpoint of each seed], "solo": [...]}``."""
    policies, normalizers, solos = [], [], []
    for k in range(K):
        torch.manual_seed(SEED + k)
        policies.append(network())
        normalizers.append(Normalizer(k))
        solos.append(copy.deepcopy(policies[-1]))
    many_opt = torch.optim.Adam([{"params": list(p.parameters()), "lr": lr} for p, lr in zip(policies, LRS)])
    many_sched = schedule(many_opt)
    solo_opts = [torch.optim.Adam(s.parameters(), lr=lr) for s, lr in zip(solos, LRS)]
    solo_scheds = [schedule(o) for o in solo_opts]
    for step in range(2):
        many_opt.zero_grad()
        sum(loss(p, k, step) for k, p in enumerate(policies)).backward()  # summed losses, as the module does
        many_opt.step()
        many_sched.step()
        for k, (solo, opt, sched) in enumerate(zip(solos, solo_opts, solo_scheds)):
            opt.zero_grad()
            loss(solo, k, step).backward()
            opt.step()
            sched.step()

    state_dict = {f"policy.{n}": v for n, v in policies[0].state_dict().items()}
    state_dict |= {f"normalizer.{n}": v for n, v in normalizers[0].state_dict().items()}
    for k in range(1, K):
        state_dict |= {f"seed_policies.{k - 1}.{n}": v for n, v in policies[k].state_dict().items()}
        state_dict |= {f"seed_normalizers.{k - 1}.{n}": v for n, v in normalizers[k].state_dict().items()}
    shuffles = [torch.Generator().manual_seed(SEED + k).get_state() for k in range(K)]
    seeds = [{"seed": SEED + k, "counters": entry(k)[0], "collector": entry(k)[1], "shuffle_rng": shuffles[k],
              "stopped": "solved" if k == 1 else None, "solved_at": 2000 if k == 1 else None} for k in range(K)]
    top = checkpoints.make_entry("PPO", "CartPole-v1", entry(0)[0], [{"collector": entry(0)[1]}], "wandb-run-0")
    many = {**copy.deepcopy(LIGHTNING), "hyper_parameters": hparams(SEED, K), "state_dict": state_dict,
            "optimizer_states": [many_opt.state_dict()], "lr_schedulers": [many_sched.state_dict()],
            checkpoints.KEY: {**top, "shuffle_rng": shuffles[0], "seeds": seeds}}
    ones = []
    for k in range(K):
        weights = {f"policy.{n}": v for n, v in solos[k].state_dict().items()}
        weights |= {f"normalizer.{n}": v for n, v in normalizers[k].state_dict().items()}
        one_entry = checkpoints.make_entry("PPO", "CartPole-v1", entry(k)[0], [{"collector": entry(k)[1]}], None)
        ones.append({**copy.deepcopy(LIGHTNING), "hyper_parameters": hparams(SEED + k, 1), "state_dict": weights,
                     "optimizer_states": [solo_opts[k].state_dict()], "lr_schedulers": [solo_scheds[k].state_dict()],
                     checkpoints.KEY: {**one_entry, "shuffle_rng": shuffles[k]}})
    # through a file and back, as the command and the module see them
    many, ones = (torch.load(_saved(c), weights_only=True) for c in (many, ones))
    return {"many": many, "one": ones, "solo": solos, "solo_opts": solo_opts, "solo_scheds": solo_scheds}


def _saved(obj: Any) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def assert_same(got: Any, expected: Any, where: str = "checkpoint") -> None:
    """Equal structure, keys, types and values; tensors exactly equal."""
    assert type(got) is type(expected), f"{where}: {type(got).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert set(got) == set(expected), f"{where}: keys {sorted(map(str, got))} != {sorted(map(str, expected))}"
        for key in expected:
            assert_same(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), f"{where}: length {len(got)} != {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype and torch.equal(got, expected), f"{where}: {got} != {expected}"
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


def test_seed_count():
    assert seed_count({"hyper_parameters": hparams(0, 3)}) == 3
    assert seed_count({"hyper_parameters": {"seed": 0}}) == 1
    with pytest.raises(ConfigError, match="num_seeds is 0"):
        seed_count({"hyper_parameters": hparams(0, 0)})


@pytest.mark.parametrize("index", range(K))
def test_each_seed_comes_out_as_the_checkpoint_its_one_seed_run_writes(made, index):
    """Weights renamed, optimizer group and its state renumbered, scheduler slot, counters, RNG:
    everything equal to the one-seed run of seed ``SEED + index``."""
    got = extract_seed(made["many"], index)
    assert_same(got, made["one"][index])


def test_seed_one_in_detail(made):
    """The same, spelled out for index 1, whose parameters are 4..7 of the 3-group Adam."""
    many, got = made["many"], extract_seed(made["many"], 1)
    assert got["hyper_parameters"]["seed"] == SEED + 1 and got["hyper_parameters"]["num_seeds"] == 1
    weights = got["state_dict"]
    assert sorted(weights) == sorted(k for k in many["state_dict"] if k.startswith(("policy.", "normalizer.")))
    assert torch.equal(weights["policy.0.weight"], many["state_dict"]["seed_policies.0.0.weight"])
    assert not torch.equal(weights["policy.0.weight"], many["state_dict"]["policy.0.weight"])
    assert weights["normalizer.count"].item() == 101.0
    optimizer = got["optimizer_states"][0]
    assert [g["params"] for g in optimizer["param_groups"]] == [[0, 1, 2, 3]]
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(LRS[1] * 0.25)
    assert sorted(optimizer["state"]) == [0, 1, 2, 3]
    assert torch.equal(optimizer["state"][0]["exp_avg"], many["optimizer_states"][0]["state"][4]["exp_avg"])
    scheduler = got["lr_schedulers"][0]
    assert scheduler["base_lrs"] == [LRS[1]] and scheduler["_last_lr"] == [pytest.approx(LRS[1] * 0.25)]
    assert scheduler["lr_lambdas"] == [None] and scheduler["last_epoch"] == 2
    entry_1 = got[checkpoints.KEY]
    assert "seeds" not in entry_1 and entry_1["wandb_run_id"] is None
    assert (entry_1["env_steps"], entry_1["episodes"], entry_1["skipped_updates"]) == (2000, 11, 1)
    assert torch.equal(entry_1["processes"][0]["collector"]["observations"], torch.ones(2, 3))
    assert torch.equal(entry_1["shuffle_rng"], torch.Generator().manual_seed(SEED + 1).get_state())
    assert got["global_step"] == 2 and got["loops"] == LIGHTNING["loops"]


def test_the_extracted_state_loads_and_trains_on_as_the_one_seed_run(made):
    """A fresh one-seed network, Adam and LambdaLR load the extracted state strictly; one more
    step then moves the weights exactly as the one-seed run's own next step does."""
    got = extract_seed(made["many"], 1)
    policy, normalizer = network(), Normalizer(0)
    holder = nn.Module()
    holder.policy, holder.normalizer = policy, normalizer
    holder.load_state_dict(got["state_dict"], strict=True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1.0)
    scheduler = schedule(optimizer)
    optimizer.load_state_dict(got["optimizer_states"][0])
    scheduler.load_state_dict(got["lr_schedulers"][0])
    # the one-seed run's own live objects, copied together so the optimizer holds the copied weights
    solo, solo_opt, solo_sched = copy.deepcopy((made["solo"][1], made["solo_opts"][1], made["solo_scheds"][1]))
    assert solo_opt.param_groups[0]["params"][0] is next(solo.parameters())
    for net, opt, sched in ((policy, optimizer, scheduler), (solo, solo_opt, solo_sched)):
        opt.zero_grad()
        loss(net, 1, 2).backward()
        opt.step()
        sched.step()
    for a, b in zip(policy.parameters(), solo.parameters()):
        assert torch.equal(a, b)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(LRS[1] * 0.125)


def test_the_input_is_not_changed(made):
    many = made["many"]
    before = copy.deepcopy(many)
    got = extract_seed(many, 2)
    got["state_dict"]["policy.0.weight"].add_(1.0)
    got["optimizer_states"][0]["state"][0]["exp_avg"].add_(1.0)
    got[checkpoints.KEY]["processes"][0]["collector"]["episode_returns"].append(9.0)
    assert_same(many, before)


def test_an_index_out_of_range_names_the_seed_count(made):
    for index in (3, -1):
        with pytest.raises(ConfigError, match=r"seed index .* out of range: the checkpoint holds 3 seeds \(indices 0..2\)"):
            extract_seed(made["many"], index)


def test_a_one_seed_checkpoint_has_only_index_zero(made):
    one = made["one"][1]
    got = extract_seed(one, 0)
    assert got is not one and got["state_dict"]["policy.0.weight"] is not one["state_dict"]["policy.0.weight"]
    assert_same(got, one)
    with pytest.raises(ConfigError, match=r"holds 1 seed \(indices 0..0\)"):
        extract_seed(one, 1)


def test_a_checkpoint_whose_seeds_do_not_add_up_is_refused(made):
    short = copy.deepcopy(made["many"])
    short[checkpoints.KEY]["seeds"].pop()
    with pytest.raises(ConfigError, match="num_seeds=3 but its entry's 'seeds' list holds 2 seeds"):
        extract_seed(short, 1)
    missing = copy.deepcopy(made["many"])
    del missing["state_dict"]["seed_policies.1.2.bias"]
    with pytest.raises(ConfigError, match="seed index 2 weights do not match index 0's"):
        extract_seed(missing, 2)
    groups = copy.deepcopy(made["many"])
    groups["optimizer_states"][0]["param_groups"].pop()
    with pytest.raises(ConfigError, match="optimizer has 2 param groups"):
        extract_seed(groups, 0)


def test_the_command_writes_a_checkpoint_that_loads_safely(made, tmp_path, capsys):
    source, output = tmp_path / "many.ckpt", tmp_path / "seed2.ckpt"
    torch.save(made["many"], source)
    assert main([str(source), "--seed-index", "2", "--output", str(output)]) == 0
    assert f"seed index 2 of 3: seed {SEED + 2}" in capsys.readouterr().out
    assert_same(torch.load(output, weights_only=True), made["one"][2])
    assert_same(checkpoints.read(output), made["one"][2])


@pytest.mark.parametrize("args", [["--seed-index", "3"], ["--seed-index", "0", "--missing"]])
def test_the_command_refuses_in_one_line(made, tmp_path, capsys, args):
    source, output = tmp_path / "many.ckpt", tmp_path / "out.ckpt"
    torch.save(made["many"], source)
    path = str(tmp_path / "absent.ckpt") if "--missing" in args else str(source)
    with pytest.raises(SystemExit) as stop:
        main([path, *[a for a in args if a != "--missing"], "--output", str(output)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert ("holds 3 seeds" in err) if "--missing" not in args else ("does not exist" in err)
    assert not output.exists()


def test_python_dash_m_runs_the_command(made, tmp_path):
    source, output = tmp_path / "many.ckpt", tmp_path / "seed1.ckpt"
    torch.save(made["many"], source)
    done = subprocess.run([sys.executable, "-m", "pg_lightning.seed_checkpoints", str(source), "--seed-index", "1",
                           "--output", str(output)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same(torch.load(output, weights_only=True), made["one"][1])
