"""The configs shipped inside the package: ``--config cartpole_ppo`` names ``pg_lightning/configs/cartpole_ppo.yaml``.

A ``--config`` value that is an existing path, has a suffix or a folder in it, or is inline YAML
is left to LightningCLI; a bare name that is no file here is looked up among the packaged configs.
"""

from __future__ import annotations

import re
from pathlib import Path

from pg_lightning.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_OPTIONS = ("--config", "-c")
_NAME = re.compile(r"[A-Za-z0-9_-]+")  # no suffix, no folder, no YAML syntax


def names() -> list[str]:
    """The packaged configs' names (``cartpole_ppo``, ...), sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def path(name: str) -> Path:
    """The file of packaged config ``name``, or a ConfigError listing the known ones."""
    file = CONFIG_DIR / f"{name}.yaml"
    if not _NAME.fullmatch(name) or not file.is_file():
        raise ConfigError(f"--config {name!r} is no file and no packaged config; packaged: {', '.join(names())}")
    return file


def _resolve(value: str) -> str:
    """``value`` as given, or the path of the packaged config it names."""
    if not _NAME.fullmatch(value) or Path(value).exists():
        return value
    return str(path(value))


def resolve_args(args: list[str]) -> list[str]:
    """``args`` with every ``--config NAME`` / ``-c NAME`` / ``--config=NAME`` of a packaged
    config replaced by that config's path."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in CONFIG_OPTIONS and i + 1 < len(args):
            out += [arg, _resolve(args[i + 1])]
            i += 2
            continue
        option, eq, value = arg.partition("=")
        out.append(f"{option}={_resolve(value)}" if eq and option in CONFIG_OPTIONS else arg)
        i += 1
    return out


def epilog() -> str:
    """The ``--help`` text that lists the packaged configs and the other commands."""
    return (f"Packaged configs (--config NAME, from any folder): {', '.join(names())}. "
            "Share a checkpoint on the Hugging Face Hub: pg-lightning push CKPT --repo-id USER/NAME "
            "(pip install 'pg_lightning[hub]').")
