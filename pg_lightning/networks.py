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

from pg_lightning.errors import ConfigError
from pg_lightning.observations import image_shape, is_image, leaf_spaces
from pg_lightning.registry import class_spec


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


class Encoder(nn.Module):
    """One encoder per observation entry (the Nature CNN for images, a flatten otherwise), concatenated."""

    def __init__(self, observation_space: gym.Space):
        super().__init__()
        spaces = leaf_spaces(observation_space)
        make = lambda space: NatureCNN(*image_shape(space)) if is_image(space) else nn.Flatten()  # noqa: E731
        self.keys = list(spaces) if isinstance(spaces, dict) else None
        self.parts = nn.ModuleDict({k: make(s) for k, s in spaces.items()}) if self.keys is not None else make(spaces)

    def forward(self, x: Tensor | dict[str, Tensor]) -> Tensor:
        if self.keys is None:
            return self.parts(x)
        return torch.cat([self.parts[k](x[k]) for k in self.keys], -1)


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
