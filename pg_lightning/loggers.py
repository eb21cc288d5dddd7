"""Weights & Biases logging that never needs the network unless you have an API key."""

from __future__ import annotations

import netrc
import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_info


def wandb_api_key_configured() -> bool:
    """True if ``WANDB_API_KEY`` is set or ``~/.netrc`` holds credentials for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger(_WandbLogger):
    """Lightning's ``WandbLogger`` with an offline default and ``train/env_steps`` as the x-axis.

    ``mode=None`` picks ``WANDB_MODE`` if set, else ``online`` with an API key and ``offline``
    without one (saying so once, with the command to upload the run later).
    """

    def __init__(
        self, project: str = "pg_lightning", save_dir: str = "runs", mode: str | None = None, **kwargs: Any
    ):
        if mode is None:
            mode = os.environ.get("WANDB_MODE") or ("online" if wandb_api_key_configured() else "offline")
        if mode == "offline":
            rank_zero_info(
                "W&B: no API key configured, logging offline to runs/wandb "
                "(upload later with `wandb sync runs/wandb/offline-run-*`)"
            )
        super().__init__(project=project, save_dir=save_dir, mode=mode, **kwargs)
        self._axes_defined = False

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self._axes_defined:
            for prefix in ("train", "val", "test"):
                self.experiment.define_metric(f"{prefix}/env_steps")
                self.experiment.define_metric(f"{prefix}/*", step_metric=f"{prefix}/env_steps")
            self._axes_defined = True
        super().log_metrics(metrics, step)
