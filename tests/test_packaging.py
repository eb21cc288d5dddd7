"""The ``pg-lightning`` command and the configs shipped in the package; the wheel, installed into a
fresh venv and run from an empty folder (slow)."""

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from helpers import user_env

from pg_lightning import cli, command, packaged
from pg_lightning.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_the_top_level_configs_folder_is_the_packaged_one():
    assert (ROOT / "configs").resolve() == packaged.CONFIG_DIR
    assert packaged.names() == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    assert {"cartpole_ppo", "cartpole_reinforce", "lunarlander_ppo"} <= set(packaged.names())


@pytest.mark.parametrize("given", [["--config", "cartpole_ppo"], ["--config=cartpole_ppo"], ["-c", "cartpole_ppo"]])
def test_a_bare_name_is_the_packaged_config(given):
    path = str(packaged.CONFIG_DIR / "cartpole_ppo.yaml")
    option = given[0].partition("=")[0]
    expected = [f"{option}={path}"] if "=" in given[0] else [option, path]
    assert packaged.resolve_args(["fit", *given, "--model.lr", "0.1"]) == ["fit", *expected, "--model.lr", "0.1"]


@pytest.mark.parametrize("value", ["configs/cartpole_ppo.yaml", "cartpole_ppo.yaml", "{model: {init_args: {lr: 1}}}",
                                   "/abs/x.yml"])
def test_paths_and_inline_yaml_are_left_to_lightningcli(value):
    assert packaged.resolve_args(["--config", value]) == ["--config", value]


def test_a_file_in_the_working_folder_wins_over_a_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cartpole_ppo").write_text("model: {}\n")
    assert packaged.resolve_args(["--config", "cartpole_ppo"]) == ["--config", "cartpole_ppo"]


def test_an_unknown_name_is_one_line_naming_the_packaged_ones(capsys):
    with pytest.raises(ConfigError, match="packaged: acrobot_ppo, breakout_ppo, cartpole_a2c"):
        packaged.resolve_args(["--config", "cartpole_dqn"])
    with pytest.raises(SystemExit) as exit:
        cli.main(["--config", "cartpole_dqn"])
    assert exit.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --config 'cartpole_dqn' is no file and no packaged config; packaged: ")


def test_help_lists_the_packaged_configs_and_push(capsys):
    with pytest.raises(SystemExit) as exit:
        command.main(["--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Packaged configs (--config NAME, from any folder): " + ", ".join(packaged.names()) in text
    assert "pg-lightning push CKPT --repo-id USER/NAME" in text


def test_the_command_routes_push_to_the_hub(monkeypatch):
    from pg_lightning import hub

    seen = []
    monkeypatch.setattr(hub, "main", lambda args: seen.append(args) or 0)
    assert command.main(["push", "x.ckpt", "--repo-id", "u/n"]) == 0
    assert seen == [["x.ckpt", "--repo-id", "u/n"]]


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


@pytest.mark.slow
def test_the_wheel_installs_and_runs_a_packaged_config_from_an_empty_folder(tmp_path):
    """The wheel, built here and installed without its dependencies into a fresh venv that sees
    this one's packages (no network: .ci/run's fresh-venv install already resolves them)."""
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp_path / "dist")], timeout=300)
    [wheel] = (tmp_path / "dist").glob("pg_lightning-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"pg_lightning/configs/{n}.yaml" for n in packaged.names()} <= set(names)
    assert "pg_lightning/configs/sweeps/cartpole_ppo.yaml" in names
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin/python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after the venv's own packages
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         timeout=300)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**user_env(empty), "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    where = _run([str(python), "-c", "import pg_lightning; print(pg_lightning.__file__)"], cwd=empty, env=env)
    assert where.stdout.strip().startswith(str(site))  # the wheel's package, not this checkout's
    help_text = _run(["pg-lightning", "--help"], cwd=empty, env=env, timeout=120).stdout
    assert "cartpole_reinforce" in help_text
    result = _run(["pg-lightning", "--config", "cartpole_reinforce", "--model.max_env_steps", "2000",
                   "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"], cwd=empty, env=env,
                  timeout=300)
    assert "Done: " in result.stdout and "env steps" in result.stdout
    assert list(empty.glob("**/checkpoints/*.ckpt"))


def test_every_declared_floor_is_pinned_in_the_floor_constraints():
    """pyproject.toml's ``>=`` floors and ``.ci/floors.txt`` (what .ci/run installs and tests) agree."""
    import re

    import tomllib
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(re.match(r"([\w.-]+)==(\S+)", line).groups()
                for line in (ROOT / ".ci/floors.txt").read_text().splitlines() if line and not line.startswith("#"))
    pins = {name.lower().replace("_", "-"): Version(v) for name, v in pins.items()}
    for text in [*project["dependencies"], *project["optional-dependencies"]["hub"]]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        if name != "torch":  # torch: the local 2.13.0 build at both ends
            assert floors and pins.get(name) == floors[0], (text, pins.get(name))
