"""Weights & Biases logging that never needs the network unless you are logged in, and the run
folder every logger's files share."""

from __future__ import annotations

import functools
import netrc
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

AXES = ("train", "val", "test")  # a metric "<prefix>/..." is plotted against "<prefix>/env_steps"


def axis(key: str) -> str:
    """The x-axis of metric ``key``: ``<prefix>/env_steps`` for ``train/``, ``val/`` and ``test/``
    metrics, ``trainer/global_step`` for anything else (and for the env-step axes themselves)."""
    prefix = key.partition("/")[0]
    return f"{prefix}/env_steps" if prefix in AXES and key != f"{prefix}/env_steps" else "trainer/global_step"


def _wandb_settings() -> Any:
    """W&B's settings for this process (``wandb login --host``, ``WANDB_*``), without starting its service."""
    from wandb.sdk import wandb_setup

    setup = wandb_setup.singleton()  # creates the singleton from wandb 0.2x on
    return (setup if setup is not None else wandb_setup._setup(start_service=False)).settings


def wandb_logged_in() -> bool:
    """W&B's own answer to "are there credentials for the server it would talk to?": the
    ``WANDB_API_KEY`` / identity-token variables, the netrc file (``NETRC`` or ``~/.netrc``) and
    the host of ``wandb login --host`` / ``WANDB_BASE_URL``. Never prompts, never goes online.
    Asked of W&B's private ``wbauth`` module where this W&B has it, else of its settings and the
    netrc file (``credentials_configured``); chosen once, at first use."""
    return _login_check()()


@functools.cache
def _login_check() -> Callable[[], bool]:
    """``wbauth_logged_in`` if this W&B has the ``wbauth`` functions it calls, else ``credentials_configured``."""
    try:
        from wandb.sdk.lib import wbauth
    except ImportError:
        return credentials_configured
    needed = ("HostUrl", "authenticate_session")
    return wbauth_logged_in if all(hasattr(wbauth, name) for name in needed) else credentials_configured


def wbauth_logged_in() -> bool:
    """W&B's own credential lookup (a private module), with prompting and session updates off."""
    from wandb.errors import AuthenticationError
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth

    settings = wandb_setup.singleton().settings
    host = wbauth.HostUrl(settings.base_url, app_url=settings.app_url)
    try:
        return wbauth.authenticate_session(host=host, source="pg_lightning", prompt=False,
                                           update_session=False) is not None
    except AuthenticationError:  # malformed credentials: W&B would refuse them, so log offline
        return False


def credentials_configured() -> bool:
    """The public fallback of ``wandb_logged_in``: an API key or identity-token file in W&B's
    settings (which read the ``WANDB_*`` variables and settings files), or an entry for the
    settings' host in the netrc file. Reads files only (``wandb.login(prompt=False)`` would also
    write settings and look the user up online)."""
    settings = _wandb_settings()
    if getattr(settings, "api_key", None) or getattr(settings, "identity_token_file", None):
        return True
    host = urllib.parse.urlparse(settings.base_url).hostname
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return host is not None and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_reachable(timeout: float = 3.0) -> bool:
    """Whether W&B's server answers an HTTP request, through ``HTTPS_PROXY`` / ``NO_PROXY`` as
    W&B's own requests go. A 5xx answer (a proxy that cannot reach the server says 502-504) is
    no answer from W&B."""
    import requests

    try:
        return requests.head(_wandb_settings().base_url, timeout=timeout).status_code < 500
    except requests.RequestException:
        return False


def run_folder(trainer: L.Trainer) -> Path:
    """The folder a run's files go to: ``<save_dir>/<name>/<version>/`` of the first logger
    (``runs/pg_lightning/<W&B run id>/`` by default), the parent of Lightning's own
    ``checkpoints/`` folder; the Trainer's ``default_root_dir`` without a logger. Rank zero's."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir, str(logger.name), version)


class WandbLogger(_WandbLogger):
    """Lightning's ``WandbLogger`` with an offline default and every metric's x-axis set by name.

    ``mode=None`` picks ``WANDB_MODE`` if set, else ``online`` when W&B has credentials and its
    server answers, and ``offline`` otherwise, saying so in one line with the command to upload
    the run later (every metric is kept in the offline run). Each metric is defined by its own
    name the first time it is logged: ``train/*`` against ``train/env_steps``, ``val/*`` and
    ``test/*`` against ``val/env_steps`` and ``test/env_steps``, anything else against
    ``trainer/global_step`` — no glob decides it.
    """

    def __init__(
        self,
        project: str = "pg_lightning",
        save_dir: str = "runs",
        mode: str | None = None,
        group: str | None = None,
        **kwargs: Any,
    ):
        if mode is not None:
            reason = f"mode={mode}"
        elif os.environ.get("WANDB_MODE"):
            mode = os.environ["WANDB_MODE"]
            reason = f"WANDB_MODE={mode}"
        elif not wandb_logged_in():
            mode, reason = "offline", "not logged in"
        elif not wandb_reachable():
            mode, reason = "offline", "server unreachable"
        else:
            mode, reason = "online", None
        self._offline_reason = None  # set when this logger, not W&B, says that the run is offline
        if mode in ("offline", "dryrun") and kwargs.get("settings") is None:
            import wandb

            kwargs["settings"] = wandb.Settings(silent=True)  # the one line of `experiment` says it all
            self._offline_reason = reason
        if group is not None:
            kwargs["group"] = group  # runs of one config over several seeds, shown together
        super().__init__(project=project, save_dir=save_dir, mode=mode, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            del self._wandb_init["anonymous"]  # W&B warns that the setting does nothing
        self._defined: set[str] = set()

    @property
    def experiment(self) -> Any:
        """The W&B run, started on first use (its folder made first, so W&B finds no missing git root)."""
        started = self._experiment is not None
        if not started and self.save_dir is not None:
            os.makedirs(self.save_dir, exist_ok=True)
        run = super().experiment
        if not started and self._offline_reason is not None and isinstance(getattr(run, "dir", None), str):
            folder = Path(run.dir).parent
            rank_zero_info(f"W&B: offline ({self._offline_reason}), run {run.id} saved in {folder} "
                           f"(upload later with `wandb sync {folder}`)")
        return run

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        new = [k for k in metrics if k not in self._defined]
        for key in new:
            self.experiment.define_metric(key, step_metric=axis(key), step_sync=True)
            self._defined.add(key)
        super().log_metrics(metrics, step)
