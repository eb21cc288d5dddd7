"""Checkpoints from someone else: a genuine checkpoint edited in plain data only (it still loads
with ``weights_only=True``) must run no code in ``play``, ``export`` or ``train.py validate``;
each refuses in one line, and what the user allows still loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from pg_lightning import Reinforce, checkpoints
from pg_lightning.cli import main as cli_main
from pg_lightning.errors import ConfigError
from pg_lightning.export import main as export_main
from pg_lightning.play import main as play_main
from pg_lightning.registry import load_module, load_policy

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = '''
from pathlib import Path
Path({marker!r}).write_text("imported")

class Net:
    def __init__(self, *args, **kwargs):
        Path({marker!r}).write_text("built")
'''


def save(module: L.LightningModule, path: Path, updates: int = 1) -> Path:
    trainer = L.Trainer(max_epochs=updates, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    return save(Reinforce(seed=0), tmp_path_factory.mktemp("genuine") / "genuine.ckpt")


@pytest.fixture
def hostile(genuine, tmp_path, monkeypatch):
    """``edit(**hyper_parameters) -> path``: the genuine checkpoint with its hyper-parameters
    edited; a module ``hostile_code`` on the path writes ``marker`` when imported or built."""
    marker = tmp_path / "code-ran"
    (tmp_path / "hostile_code.py").write_text(HOSTILE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    monkeypatch.delitem(sys.modules, "hostile_code", raising=False)

    def edit(**changes) -> Path:
        checkpoint = torch.load(genuine, weights_only=True)
        checkpoint["hyper_parameters"].update(changes)
        if "env_id" in changes:
            checkpoint["pg_lightning"]["env_id"] = changes["env_id"]
        path = tmp_path / "hostile.ckpt"
        torch.save(checkpoint, path)
        torch.load(path, weights_only=True)  # still plain data
        return path

    edit.marker = marker
    return edit


ROUTES = {
    "shell wrapper": ({"wrappers": [{"class_path": "pydoc.pipepager", "init_args": {"cmd": "touch {marker}"}}]},
                      "wrappers name 'pydoc.pipepager'"),
    "env module": ({"env_id": "hostile_code:CartPole-v1"}, "env_id 'hostile_code:CartPole-v1' imports module 'hostile_code'"),
    "network": ({"network": {"class_path": "hostile_code.Net", "init_args": {"width": 3}}},
                "network names the class 'hostile_code.Net'"),
    "callable argument": ({"wrappers": [{"class_path": "gymnasium.wrappers.TransformReward",
                                          "init_args": {"func": "hostile_code.Net"}}]},
                          "wrappers name 'gymnasium.wrappers.TransformReward'"),
    "file writer": ({"wrappers": [{"class_path": "gymnasium.wrappers.RecordVideo",
                                    "init_args": {"video_folder": "{tmp}/videos"}}]},
                    "wrappers name 'gymnasium.wrappers.RecordVideo'"),
    "huge network": ({"hidden_sizes": [65536] * 4},
                     "hidden_sizes [65536, 65536, 65536, 65536] make a network of 12,885,295,105 parameters"),
}


def fill(value, **names):
    """``value`` with ``{marker}`` / ``{tmp}`` filled in its strings."""
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list):
        return [fill(v, **names) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, **names) for k, v in value.items()}
    return value


COMMANDS = {
    "play": lambda path: play_main([str(path), "--episodes", "1"]),
    "export": lambda path: export_main([str(path), "--output", str(path.with_suffix(".pt"))]),
    "validate": lambda path: cli_main(["validate", "--ckpt_path", str(path), "--trainer.logger", "false"]),
}


def exit_code(run) -> int:
    try:
        return run()
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_hostile_checkpoint_runs_no_code_and_is_refused_in_one_line(hostile, tmp_path, capsys, route, command):
    changes, message = ROUTES[route]
    path = hostile(**fill(changes, marker=hostile.marker, tmp=tmp_path))
    assert exit_code(lambda: COMMANDS[command](path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not hostile.marker.exists() and "hostile_code" not in sys.modules
    assert not (tmp_path / "videos").exists() and not path.with_suffix(".pt").exists()


@pytest.mark.parametrize("command", ["pg_lightning.play", "pg_lightning.export", "train.py"])
def test_the_commands_themselves_refuse_a_shell_command_in_a_checkpoint(hostile, tmp_path, command):
    """The same through real processes: exit 2, one line, no traceback, the command never ran."""
    path = hostile(**fill(ROUTES["shell wrapper"][0], marker=hostile.marker, tmp=tmp_path))
    args = {"pg_lightning.play": ["-m", "pg_lightning.play", str(path)],
            "pg_lightning.export": ["-m", "pg_lightning.export", str(path), "-o", str(tmp_path / "p.pt")],
            "train.py": [str(ROOT / "train.py"), "validate", "--ckpt_path", str(path), "--trainer.logger", "false"]}
    done = subprocess.run([sys.executable, *args[command]], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not hostile.marker.exists()


def test_a_checkpoints_class_path_must_be_an_algorithm(hostile, capsys):
    path = hostile(_class_path="hostile_code.Net")
    assert exit_code(lambda: COMMANDS["validate"](path)) == 2
    assert "_class_path 'hostile_code.Net' is not a pg_lightning algorithm" in capsys.readouterr().err
    assert not hostile.marker.exists()


@pytest.fixture(scope="module")
def user_env_checkpoint(tmp_path_factory) -> Path:
    module = Reinforce(env_id="user_envs:UserEnvs/Signal-v0", network="user_envs.TinyTrunk", seed=0)
    return save(module, tmp_path_factory.mktemp("user") / "user.ckpt")


def test_user_code_loads_when_the_user_allows_it(user_env_checkpoint, capsys):
    with pytest.raises(ConfigError, match="imports module 'user_envs'.*--allow user_envs"):
        load_policy(user_env_checkpoint)
    module = load_module(user_env_checkpoint, allow=["user_envs"])  # the module prefix allows both
    assert type(module.policy.encoder).__name__ == "TinyTrunk"
    assert load_policy(user_env_checkpoint, trusted=True) is not None  # the whole file trusted
    assert play_main([str(user_env_checkpoint), "--episodes", "1", "--allow", "user_envs"]) == 0
    assert "episode 0: return" in capsys.readouterr().out


def test_train_py_loads_what_the_command_line_restates(user_env_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli_main(["validate", "--ckpt_path", str(user_env_checkpoint), "--trainer.logger", "false"])
    cli = cli_main(["validate", "--ckpt_path", str(user_env_checkpoint), "--trainer.logger", "false",
                    "--trainer.enable_progress_bar", "false", "--model.env_id", "user_envs:UserEnvs/Signal-v0",
                    "--model.network", "user_envs.TinyTrunk", "--model.eval_episodes", "1"])
    assert type(cli.model.policy.encoder).__name__ == "TinyTrunk"


def test_gymnasiums_data_only_wrappers_load_untrusted(genuine, tmp_path):
    checkpoint = torch.load(genuine, weights_only=True)
    checkpoint["hyper_parameters"]["wrappers"] = [{"class_path": "gymnasium.wrappers.ClipReward",
                                                   "init_args": {"min_reward": -1, "max_reward": 1}}]
    torch.save(checkpoint, tmp_path / "wrapped.ckpt")
    assert load_module(tmp_path / "wrapped.ckpt").hparams.wrappers[0]["class_path"] == "gymnasium.wrappers.ClipReward"


def test_a_plain_data_check_refuses_tensors_in_arguments(genuine, tmp_path):
    checkpoint = torch.load(genuine, weights_only=True)
    checkpoint["hyper_parameters"]["env_kwargs"] = {"x": torch.zeros(1)}
    torch.save(checkpoint, tmp_path / "kwargs.ckpt")
    with pytest.raises(ConfigError, match="env_kwargs must be plain data"):
        checkpoints.hyperparameters(torch.load(tmp_path / "kwargs.ckpt", weights_only=True), "x")


def test_a_callable_argument_is_never_resolved_from_a_string_even_when_allowed(hostile, tmp_path):
    path = hostile(**ROUTES["callable argument"][0])
    with pytest.raises(ConfigError, match="TransformReward's 'func' takes a callable, got the string 'hostile_code.Net'"):
        load_module(path, allow=["gymnasium.wrappers.TransformReward"])
    assert not hostile.marker.exists()
