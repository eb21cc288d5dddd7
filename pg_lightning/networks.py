"""Encoders: what turns preprocessed observations into one feature vector, before the MLP.

The default ``Encoder`` runs the Nature-DQN CNN on each image entry and flattens every other
entry, then concatenates them. ``user_network`` builds a user's own module from a ``class_path``
in its place (``network:`` in a config).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import gymnasium as gym
import torch
from torch import Tensor, nn

from pg_lightning.classpaths import class_spec
from pg_lightning.errors import ConfigError
from pg_lightning.observations import check_image_stack, image_shape, is_image, leaf_spaces


class NatureCNN(nn.Module):
    """The convolutions of Mnih et al. (2015) and a 512-unit ReLU layer, initialised orthogonally
    with gain √2 as in CleanRL's ``ppo_atari.py``. Input ``[B, C, H, W]`` floats in [0, 1]."""

    def __init__(self, channels: int, height: int, width: int, features: int = 512):
        super().__init__()
        convolutions = [
            nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        ]
        with torch.no_grad():
            flat = nn.Sequential(*convolutions)(torch.zeros(1, channels, height, width)).shape[1]
        self.net = nn.Sequential(*convolutions, nn.Linear(flat, features), nn.ReLU())
        for layer in self.net:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(layer.weight, math.sqrt(2))
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def entry_encoder(space: gym.Space) -> nn.Module:
    """The encoder of one observation entry: the Nature CNN for an image, a flatten otherwise."""
    return NatureCNN(*image_shape(space)) if is_image(space) else nn.Flatten()


class Encoder(nn.Module):
    """One encoder per observation entry (the Nature CNN for images, a flatten otherwise), concatenated.

    Entries are named in ``parts`` by ``module_name`` of their key (the key itself unless
    ``ModuleDict`` refuses it), so checkpoints keep their parameter names."""

    def __init__(self, observation_space: gym.Space):
        super().__init__()
        check_image_stack(observation_space)
        spaces = leaf_spaces(observation_space)
        self.keys = list(spaces) if isinstance(spaces, dict) else None
        self.names = [module_name(k) for k in self.keys] if self.keys is not None else None
        self.parts = (nn.ModuleDict({module_name(k): entry_encoder(s) for k, s in spaces.items()})
                      if self.keys is not None else entry_encoder(spaces))

    def forward(self, x: Tensor | dict[str, Tensor]) -> Tensor:
        if self.keys is None:
            return self.parts(x)
        return torch.cat([self.parts[name](x[k]) for name, k in zip(self.names, self.keys)], -1)


_MODULE_DICT = nn.ModuleDict()  # the attributes a ModuleDict name must not shadow


def module_name(key: str) -> str:
    """``key`` as a ``ModuleDict`` name: itself when allowed (no ".", not empty, no ``ModuleDict``
    attribute such as ``keys``), else ``%`` and the key with ``%`` and ``.`` percent-encoded.
    Kept keys hold no ``%``, and every changed one starts with it: distinct keys stay distinct."""
    if key and "." not in key and "%" not in key and not hasattr(_MODULE_DICT, key):
        return key
    return "%" + key.replace("%", "%25").replace(".", "%2E")


def user_network(spec: str | dict[str, Any], observation_space: gym.Space) -> nn.Module:
    """The module a ``network:`` entry names, built with its ``init_args`` (and the observation
    space, if its constructor takes an ``observation_space`` argument)."""
    cls, kwargs = class_spec(spec, "network")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"network: {cls.__module__}.{cls.__qualname__} is not a torch.nn.Module")
    if "observation_space" in inspect.signature(cls).parameters:
        kwargs.setdefault("observation_space", observation_space)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"network: {cls.__qualname__}({kwargs}) failed: {err}") from None
