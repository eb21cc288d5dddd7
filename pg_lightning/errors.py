"""The error raised for bad settings, so the CLI can report it as one line instead of a traceback."""


class ConfigError(ValueError):
    """A setting, env id or space that pg_lightning cannot use; the message names it and what is allowed."""


class MissingExtra(ConfigError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def require(ok: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)
