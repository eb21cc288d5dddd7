"""A user's own env package, as a test would write one: importing it registers the envs
(``env_id: user_envs:UserEnvs/Picture-v0``), and a small trunk of their own for ``network:``.

Every env is a short contextual bandit whose reward depends on what the observation shows, so
a policy can only beat chance (half the episode length) by reading the observation through its
encoder: the CNN for the picture, one-hot for the Discrete cue, the Dict's entries.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

LENGTH = 8  # steps per episode: chance scores LENGTH / 2, a policy that reads the observation LENGTH


class _Bandit(gym.Env):
    """Each step shows a random cue; reward 1 when the action names it (cue in {0, 1})."""

    action_space = gym.spaces.Discrete(2)
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.cue = int(self.np_random.integers(2))
        return self.observe(), {}

    def step(self, action):
        reward = float(int(action) == self.cue)
        self.t += 1
        self.cue = int(self.np_random.integers(2))
        return self.observe(), reward, self.t >= LENGTH, False, {}

    def render(self):
        image = np.zeros((48, 48, 3), np.uint8)
        image[:, slice(0, 24) if self.cue == 0 else slice(24, 48)] = 255
        return image


class Picture(_Bandit):
    """A 40×40 RGB picture (channels last): a bright square on the left (cue 0) or the right (cue 1)
    half, at a random height, on a noisy background."""

    observation_space = gym.spaces.Box(0, 255, (40, 40, 3), np.uint8)

    def observe(self):
        image = self.np_random.integers(0, 60, (40, 40, 3), dtype=np.uint8)
        top, left = int(self.np_random.integers(0, 28)), (2 if self.cue == 0 else 22) + int(self.np_random.integers(0, 6))
        image[top:top + 12, left:left + 12] = 255
        return image


class Parity(_Bandit):
    """A Discrete(6) observation whose parity is the cue."""

    observation_space = gym.spaces.Discrete(6)

    def observe(self):
        return 2 * int(self.np_random.integers(3)) + self.cue


class Signal(_Bandit):
    """A noisy float Box(2) whose larger entry is the cue."""

    observation_space = gym.spaces.Box(-2.0, 3.0, (2,), np.float32)

    def observe(self):
        return (np.eye(2, dtype=np.float32)[self.cue] + self.np_random.uniform(-0.3, 0.3, 2)).astype(np.float32)


class AppendConstant(gym.ObservationWrapper):
    """Appends ``value`` to a flat Box observation: wrappers applied in order show up in order."""

    def __init__(self, env: gym.Env, value: float):
        super().__init__(env)
        self.value = value
        low, high = (np.append(bound, value).astype(np.float32) for bound in (env.observation_space.low, env.observation_space.high))
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, obs):
        return np.append(obs, self.value).astype(np.float32)


class CueDict(_Bandit):
    """A Dict observation: the cue as ``Discrete(2)`` next to a distracting Box and a nested Tuple."""

    observation_space = gym.spaces.Dict({
        "cue": gym.spaces.Discrete(2),
        "noise": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        "extra": gym.spaces.Tuple((gym.spaces.MultiBinary(2), gym.spaces.Box(0.0, 1.0, (2, 2), np.float32))),
    })

    def observe(self):
        return {
            "cue": self.cue,
            "noise": self.np_random.uniform(-1, 1, 3).astype(np.float32),
            "extra": (self.np_random.integers(0, 2, 2).astype(np.int8), np.zeros((2, 2), np.float32)),
        }


class DottedCue(_Bandit):
    """A Dict observation whose keys hold "." and a ``ModuleDict`` attribute name: the cue under
    ``"cue.id"``, noise under ``"keys"``."""

    observation_space = gym.spaces.Dict({
        "cue.id": gym.spaces.Discrete(2),
        "keys": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
    })

    def observe(self):
        return {"cue.id": self.cue, "keys": self.np_random.uniform(-1, 1, 3).astype(np.float32)}


class ShiftedActions(gym.Env):
    """Actions ``Discrete(3, start=-1)``: only action -1 pays (1 per step, chance LENGTH / 3); an
    action outside the space raises, as many envs' ``step`` checks do."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(3, start=-1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observe(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        self.t += 1
        return self.observe(), float(int(action) == -1), self.t >= LENGTH, False, {}

    def observe(self):
        return self.np_random.uniform(-1, 1, 2).astype(np.float32)


class IntFlags(gym.Env):
    """Episodes of 1 to 9 steps whose ``terminated`` / ``truncated`` flags are numpy integers (legal,
    and common in older envs); ``IntFlags.steps`` counts the ``step`` calls of every instance."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length = 0, int(self.np_random.integers(1, 10))
        return np.zeros(2, np.float32), {}

    def step(self, action):
        IntFlags.steps += 1
        self.t += 1
        done = self.t >= self.length
        cut = self.length % 3 == 0  # some episodes truncated, the others terminated
        return np.zeros(2, np.float32), 1.0, np.int64(done and not cut), np.int64(done and cut), {}


class ScaleReward(gym.RewardWrapper):
    """Multiplies rewards by ``factor``: a wrapper's reward scale that reported returns must not show."""

    def __init__(self, env: gym.Env, factor: float):
        super().__init__(env)
        self.factor = factor

    def reward(self, reward):
        return self.factor * reward


class TinyTrunk(nn.Module):
    """A user's own encoder: a linear layer and a tanh over the flattened observation."""

    def __init__(self, observation_space: gym.Space, width: int = 16):
        super().__init__()
        self.layer = nn.Linear(int(np.prod(observation_space.shape)), width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layer(x.flatten(1)))


for _cls in (Picture, Parity, Signal, CueDict, DottedCue, ShiftedActions, IntFlags):
    if f"UserEnvs/{_cls.__name__}-v0" not in gym.registry:
        gym.register(f"UserEnvs/{_cls.__name__}-v0", entry_point=_cls)
