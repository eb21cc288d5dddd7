"""Agents from the Hugging Face Hub: ``hf://USER/NAME`` paths and ``load_from_hub`` (needs
``pip install 'pg_lightning[hub]'``). A checkpoint from the Hub is untrusted: it is always loaded
with ``weights_only=True`` through the trust boundary (``pg_lightning.trust``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pg_lightning.errors import ConfigError, MissingExtra

if TYPE_CHECKING:
    from pg_lightning.modules.base import PolicyGradient

SCHEME = "hf://"
CHECKPOINT = "model.ckpt"


def hub_module() -> Any:
    """The ``huggingface_hub`` module, or a MissingExtra naming the extra."""
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtra("the Hugging Face Hub needs huggingface_hub: pip install 'pg_lightning[hub]'") from None
    return huggingface_hub


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"--repo-id must be USER/NAME, got {repo_id!r}")
    return repo_id


def download(repo_id: str, revision: str | None = None) -> Path:
    """The local path of ``repo_id``'s checkpoint (downloaded into, or found in, the Hub cache)."""
    hf = hub_module()
    try:
        return Path(hf.hf_hub_download(check_repo_id(repo_id), CHECKPOINT, revision=revision))
    except (OSError, ValueError) as err:  # not found, offline and not cached, bad id, HTTP errors
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"cannot get {CHECKPOINT} of Hub repo {repo_id!r}: {reason}") from None


def is_hub_url(path: str | Path) -> bool:
    return isinstance(path, str) and path.startswith(SCHEME)


def resolve_checkpoint(path: str | Path, trusted: bool = False) -> str | Path:
    """``hf://USER/NAME[@REVISION]`` as the local path of its checkpoint; any other path as given.
    A Hub checkpoint is never trusted: ``trusted=True`` with one is a ConfigError."""
    if not is_hub_url(path):
        return path
    if trusted:
        raise ConfigError(f"{path} is a Hub checkpoint, never trusted: load it without --trust-checkpoint")
    repo_id, _, revision = str(path).removeprefix(SCHEME).partition("@")
    return download(repo_id, revision or None)


def load_from_hub(repo_id: str, revision: str | None = None, **kwargs: Any) -> PolicyGradient:
    """The pg_lightning module of Hub repo ``repo_id`` (``USER/NAME``), on the CPU in eval mode.
    Always loaded as untrusted (``weights_only=True``); ``kwargs`` go to ``registry.load_module``."""
    from pg_lightning.registry import load_module

    return load_module(download(repo_id, revision), trusted=False, **kwargs)
