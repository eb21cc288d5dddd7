"""Weights & Biases logging that never needs the network unless you have an API key."""

from __future__ import annotations

import netrc
import os
import socket
from typing import Any
from urllib.parse import urlparse

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


def wandb_reachable(timeout: float = 3.0) -> bool:
    """Whether the W&B server (``WANDB_BASE_URL``, default api.wandb.ai) accepts a TCP connection."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


class WandbLogger(_WandbLogger):
    """Lightning's ``WandbLogger`` with an offline default and ``train/env_steps`` as the x-axis.

    ``mode=None`` picks ``WANDB_MODE`` if set, else ``online`` with an API key and ``offline``
    without one (saying so once, with the command to upload the run later). With a key but no
    route to the server it also falls back to offline instead of failing the run: every metric
    is kept in the offline run and can be synced later.
    """

    def __init__(
        self,
        project: str = "pg_lightning",
        save_dir: str = "runs",
        mode: str | None = None,
        group: str | None = None,
        **kwargs: Any,
    ):
        reason = None
        if mode is None:
            mode = os.environ.get("WANDB_MODE")
        if mode is None:
            if not wandb_api_key_configured():
                mode, reason = "offline", "no API key configured"
            elif not wandb_reachable():
                mode, reason = "offline", "W&B server unreachable"
            else:
                mode = "online"
        if reason is not None:
            rank_zero_info(
                f"W&B: {reason}, logging offline to {save_dir}/wandb "
                f"(upload later with `wandb sync {save_dir}/wandb/offline-run-*`)"
            )
        if group is not None:
            kwargs["group"] = group  # runs of one config over several seeds, shown together
        super().__init__(project=project, save_dir=save_dir, mode=mode, **kwargs)
        self._axes_defined = False

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self._axes_defined:
            for prefix in ("train", "val", "test"):
                self.experiment.define_metric(f"{prefix}/env_steps")
                self.experiment.define_metric(f"{prefix}/*", step_metric=f"{prefix}/env_steps")
            self._axes_defined = True
        super().log_metrics(metrics, step)
