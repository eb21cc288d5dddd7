"""Errors the CLI reports as one line instead of a traceback: bad settings and failed training."""


class ConfigError(ValueError):
    """A setting, env id or space that pg_lightning cannot use; the message names it and what is allowed."""


class TrainingError(RuntimeError):
    """Training cannot go on: an env failed or returned non-finite values, or updates kept
    coming out non-finite. The message says what happened and where."""


class MissingExtra(ConfigError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require(ok: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)
