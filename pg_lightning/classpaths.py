"""Classes named in configs: ``"pkg.mod.Class"`` or ``{class_path, init_args}``, imported and
checked against the class's signature. The ground floor: it imports no other pg_lightning module
but ``errors``, so envs, networks and the registry all stand on it."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pg_lightning.errors import ConfigError


def import_class(path: str) -> type:
    """The class a ``class_path`` names (``package.module.Class``)."""
    module_name, _, class_name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def split_spec(spec: Any, what: str) -> tuple[str, dict[str, Any]]:
    """The class path and keyword arguments of a config entry, without importing anything."""
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str) or set(spec) - {"class_path", "init_args"}:
        raise ConfigError(f"{what}: expected a class path or {{class_path: ..., init_args: {{...}}}}, got {spec!r}")
    return spec["class_path"], dict(spec.get("init_args") or {})


def class_spec(spec: Any, what: str) -> tuple[type, dict[str, Any]]:
    """The class and keyword arguments of a config entry ``"pkg.mod.Class"`` or
    ``{"class_path": ..., "init_args": {...}}``, checked against the class's signature;
    a ConfigError (prefixed with ``what``) names the entry and what is wrong.

    A string given for a parameter annotated as a callable is refused: configs and checkpoints
    hold data, and a name is never turned into code here (pass the callable in Python instead).
    """
    path, kwargs = split_spec(spec, what)
    try:
        cls = import_class(path)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{what}: cannot import {path!r}: {err}") from None
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # no signature to check against (a builtin): the call will tell
        return cls, kwargs
    try:
        signature.bind_partial(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{what}: bad init_args {kwargs} for {path}: {err}") from None
    for name, value in kwargs.items():
        annotation = signature.parameters[name].annotation if name in signature.parameters else None
        if isinstance(value, str) and "Callable" in str(annotation):
            raise ConfigError(f"{what}: {path}'s {name!r} takes a callable, got the string {value!r}; "
                              "a config names no code to run: wrap the env in Python, or write a wrapper class")
    return cls, kwargs
