"""Policy-gradient reinforcement learning as PyTorch Lightning modules.

Names are imported on first use, so light tools (``python -m pg_lightning.plot``) do not pay for
torch and Lightning. Importing the package changes no global state.
"""

from __future__ import annotations

import importlib
from typing import Any

from pg_lightning.registry import ALGORITHMS

_EXPORTS = {
    **ALGORITHMS,
    "PolicyGradient": "pg_lightning.modules.base",
    "ActorCritic": "pg_lightning.policies",
    "Batch": "pg_lightning.batch",
    "Collector": "pg_lightning.collector",
    "EpisodeDataset": "pg_lightning.data",
    "RolloutDataset": "pg_lightning.data",
    "EnvStepProgressBar": "pg_lightning.callbacks",
    "RunCheckpoint": "pg_lightning.callbacks",
    "StopWhenSolved": "pg_lightning.callbacks",
    "ConfigError": "pg_lightning.errors",
    "load_module": "pg_lightning.registry",
    "load_policy": "pg_lightning.registry",
    "load_from_hub": "pg_lightning.hub_download",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pg_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
