"""The ``pg_lightning`` entry of a Lightning checkpoint, and reading checkpoint files safely.

Lightning saves the weights, optimizer and schedulers; the entry adds what they do not hold:
which algorithm on which env, the run's counters and every process's collector state. A file is
checked before anything is built from it: it exists, loads with ``weights_only=True`` (tensors
and plain data only, so an untrusted file cannot run code), carries the entry, and its
hyperparameters name nothing the user did not allow (``trust``) and sizes within reason.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from pg_lightning import trust
from pg_lightning.errors import ConfigError

KEY = "pg_lightning"


def make_entry(
    algorithm: str, env_id: str, counters: dict[str, int | float], processes: list[dict[str, Any]],
    wandb_run_id: str | None = None,
) -> dict[str, Any]:
    """The entry a module adds when saving: the run's ``counters`` (env steps, episodes, ...),
    each process's collector state in ``processes`` and the W&B run that resuming continues."""
    return {"algorithm": algorithm, "env_id": env_id, **counters, "processes": processes,
            "wandb_run_id": wandb_run_id}


def entry_of(checkpoint: Any, source: str) -> dict[str, Any]:
    """The checkpoint's entry, or a ConfigError naming ``source``."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(KEY), dict):
        raise ConfigError(f"{source}: not a pg_lightning checkpoint (no {KEY!r} entry)")
    return checkpoint[KEY]


def check_identity(entry: dict[str, Any], algorithm: str, env_id: str | None) -> None:
    """A ConfigError unless the entry is for ``algorithm`` on ``env_id``."""
    if (entry.get("algorithm"), entry.get("env_id")) != (algorithm, env_id):
        raise ConfigError(
            f"checkpoint is for {entry.get('algorithm')} on {entry.get('env_id')}, this module is {algorithm} on {env_id}"
        )


def read(path: str | Path, trusted: bool = False, what: str = "checkpoint") -> dict[str, Any]:
    """Load a pg_lightning checkpoint file on the CPU; every failure is one ConfigError line.

    ``trusted=True`` unpickles fully (``weights_only=False``), which runs whatever code the file
    asks for: only for files you trust.
    """
    source = f"{what} {str(path)!r}"
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{source} does not exist or is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # torch.load raises anything from KeyError to RuntimeError on junk
        text = str(err).strip()
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = detail.group(1).strip() if detail else (text.splitlines()[0] if text else type(err).__name__)
        if not trusted and "Weights only load failed" in text and zipfile.is_zipfile(path):
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            raise ConfigError(
                f"{source} cannot be loaded safely (weights_only=True): "
                f"{f'it contains {found.group(1)}' if found else reason}; if you trust this file, "
                "load it with trusted=True (--trust-checkpoint)"
            ) from None
        raise ConfigError(f"{source} is not a PyTorch checkpoint ({type(err).__name__}: {reason})") from None
    entry_of(checkpoint, source)
    return checkpoint


def hyperparameters(checkpoint: dict[str, Any], source: str, allow: Collection[str] = (),
                    restated: Collection[str] = (), trusted: bool = False) -> dict[str, Any]:
    """The constructor arguments a checkpoint was saved with, checked before anything is built
    from them (LightningCLI's private ``_class_path`` / ``_instantiator`` entries dropped): the
    names they hold pass the trust boundary (``trust.check_names``: ``allow`` and the ``restated``
    fields are the user's say; ``trusted`` skips it), their sizes are bounded, and the weights
    are tensors."""
    saved = checkpoint.get("hyper_parameters")
    if not isinstance(saved, dict):
        raise ConfigError(f"{source}: no 'hyper_parameters' entry")
    hparams = {k: v for k, v in saved.items() if not str(k).startswith("_")}
    if trusted:
        trust.check_sizes(hparams, source)
    else:
        trust.check_names(hparams, source, allow, restated)
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ConfigError(f"{source}: no 'state_dict' of tensors")
    size = sum(v.numel() for v in state_dict.values())
    if size > trust.MAX_PARAMETERS:
        raise ConfigError(f"{source}: {size} weights, more than {trust.MAX_PARAMETERS}")
    return hparams
