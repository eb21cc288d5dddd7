"""Errors the CLI reports as one line instead of a traceback: bad settings and failed training."""

from collections import deque


class ConfigError(ValueError):
    """A setting, env id or space that pg_lightning cannot use; the message names it and what is allowed.

    The latest few are kept in ``raised``: some jsonargparse releases report an error met while
    trying each type of a Union only in their own message, not as its cause."""

    raised: deque = deque(maxlen=8)

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        ConfigError.raised.append(self)


class TrainingError(RuntimeError):
    """Training cannot go on: an env failed or returned non-finite values, or updates kept
    coming out non-finite. The message says what happened and where."""


class MissingExtra(ConfigError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require(ok: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)
