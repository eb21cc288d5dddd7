"""MinAtar's games under gymnasium ids: ``env_id: pg_lightning.games:MinAtar/Breakout-v1``.

MinAtar (``pip install 'pg_lightning[minatar]'``; Young & Tian 2019) ships a gymnasium env but
registers nothing on import, renders through seaborn, and seeds its games outside gymnasium's
``np_random``. Importing this module registers the five games (``-v0`` the full action set,
``-v1`` the minimal one, as MinAtar names them) with an env that draws each episode's game seed
from ``np_random`` (so the collector's checkpointed RNG states resume it exactly) and renders
``rgb_array`` frames without seaborn. Keyword arguments (``sticky_action_prob``,
``difficulty_ramping``) go to MinAtar's ``Environment``.
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np

from pg_lightning.errors import MissingExtra

try:
    logging.disable(logging.WARNING)  # minatar.gym warns at import that seaborn is missing: it is not needed here
    from minatar.gym import BaseEnv
except ImportError:
    raise MissingExtra("MinAtar games need the minatar package: pip install 'pg_lightning[minatar]'") from None
finally:
    logging.disable(logging.NOTSET)

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
PALETTE = np.array([  # background, then one colour per channel (up to 10 channels: Seaquest)
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
], dtype=np.uint8)
PIXELS_PER_CELL = 16


class MinAtarEnv(BaseEnv):
    """A MinAtar game: bool ``10×10×channels`` observations; seeded through ``np_random``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        gym.Env.reset(self, seed=seed)
        self.game.seed(int(self.np_random.integers(2**31 - 1)))
        self.game.reset()
        return self.game.state(), {}

    def render(self) -> np.ndarray | None:
        """The board as an RGB image, each cell ``PIXELS_PER_CELL`` pixels wide, or None without ``rgb_array``."""
        if self.render_mode != "rgb_array":
            return None
        state = self.game.state()
        cells = np.amax(state * np.arange(1, state.shape[-1] + 1), axis=-1)  # the last channel drawn on top
        image = PALETTE[cells % len(PALETTE)]
        return image.repeat(PIXELS_PER_CELL, 0).repeat(PIXELS_PER_CELL, 1)


for _game in GAMES:
    _name = _game.title().replace("_", "")
    for _version, _minimal in (("v0", False), ("v1", True)):
        if f"MinAtar/{_name}-{_version}" not in gym.registry:
            gym.register(f"MinAtar/{_name}-{_version}", entry_point=MinAtarEnv,
                         kwargs=dict(game=_game, use_minimal_action_set=_minimal))
