"""The action distributions: a head per action space, from the actor's output to actions.

A head turns the actor's output (its distribution parameters) into sampled and deterministic
actions, log-probabilities and entropies. The distributions are a few tensor formulas instead of
``torch.distributions`` objects (the tests check them against ``torch.distributions``); each head
also gives its draw in numpy (``numpy_sampler``), for collection by the numpy actor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import Tensor, nn

from pg_lightning.errors import ConfigError
from pg_lightning.numpy_actor import Sampler, categorical_sampler, gaussian_sampler


class CategoricalHead(nn.Module):
    """Independent categoricals over ``nvec`` (one entry for ``Discrete``, several for ``MultiDiscrete``).

    Actions are the env's: choice ``i`` of component ``k`` is the action ``start[k] + i`` (gymnasium's
    ``Discrete(n, start)``). Sampled and deterministic actions come out shifted and ``log_prob``
    shifts them back, so stored actions, log-probabilities, ``forward`` and exports all speak the
    action space's values, and no other code shifts (a ``start`` of 0 adds no operation)."""

    def __init__(self, nvec: Sequence[int], multi: bool, start: Sequence[int] | None = None):
        super().__init__()
        self.nvec, self.multi = [int(n) for n in nvec], multi
        self.param_dim = sum(self.nvec)
        self.start = [int(s) for s in start] if start is not None else [0] * len(self.nvec)
        self.shifted = any(self.start)

    def _logits(self, params: Tensor) -> list[Tensor]:
        return list(params.split(self.nvec, dim=-1))

    def _pack(self, indices: list[Tensor]) -> Tensor:
        """Choice indices per component → env actions."""
        if self.shifted:
            indices = [i + s if s else i for i, s in zip(indices, self.start)]
        return torch.stack(indices, -1) if self.multi else indices[0]

    def _unpack(self, actions: Tensor) -> list[Tensor]:
        """Env actions → choice indices per component."""
        indices = list(actions.long().unbind(-1)) if self.multi else [actions.long()]
        if self.shifted:
            indices = [i - s if s else i for i, s in zip(indices, self.start)]
        return indices

    def numpy_sampler(self) -> Sampler:
        """``(logits, rng) -> actions`` in numpy, as ``numpy_actor.categorical_sampler`` draws them."""
        return categorical_sampler(self.nvec, self.multi, self.start)

    def mode(self, params: Tensor) -> Tensor:
        return self._pack([lg.argmax(-1) for lg in self._logits(params)])

    def log_prob_entropy(self, params: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """``(log π(a), entropy)`` from one log-softmax per component."""
        log_probs, entropies = [], []
        for logits, a in zip(self._logits(params), self._unpack(actions)):
            logp = logits.log_softmax(-1)
            log_probs.append(logp.gather(-1, a.unsqueeze(-1)).squeeze(-1))
            entropies.append(-(logp.exp() * logp).sum(-1))
        if not self.multi:
            return log_probs[0], entropies[0]
        return torch.stack(log_probs).sum(0), torch.stack(entropies).sum(0)

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        return self.log_prob_entropy(params, actions)[0]

    def entropy(self, params: Tensor) -> Tensor:
        return self.log_prob_entropy(params, self.mode(params))[1]


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent, learnable log-std.

    Actions are sampled unbounded and stored as sampled; the collector clips them to the action
    space's bounds before ``env.step``. The clip is a deterministic function of the sample, so the
    log-probability of the stored sample gives an unbiased policy gradient (as in SB3 and CleanRL).
    """

    def __init__(self, action_dim: int, log_std_init: float):
        super().__init__()
        self.param_dim = action_dim
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def numpy_sampler(self) -> Sampler:
        """``(means, rng) -> actions`` in numpy with the current standard deviation frozen in."""
        return gaussian_sampler(self.log_std.detach().exp().cpu().numpy())

    def mode(self, params: Tensor) -> Tensor:
        return params

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        return gaussian_log_prob(params, actions, self.log_std)

    def entropy(self, params: Tensor) -> Tensor:
        return gaussian_entropy(params, self.log_std)

    def log_prob_entropy(self, params: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_prob(params, actions), self.entropy(params)


def gaussian_log_prob(means: Tensor, actions: Tensor, log_std: Tensor) -> Tensor:
    """``log N(actions; means, exp(log_std)²)`` summed over the action dims; ``log_std`` broadcasts
    (``[A]``, or ``[K, 1, A]`` for a stack of seeds)."""
    z = (actions - means) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_entropy(means: Tensor, log_std: Tensor) -> Tensor:
    """The diagonal Gaussian's entropy, one per row of ``means``."""
    per_dim = 0.5 + 0.5 * math.log(2 * math.pi) + log_std
    return per_dim.sum(-1).expand(means.shape[:-1])


def make_head(action_space: gym.Space, log_std_init: float = 0.0) -> nn.Module:
    """The distribution head for an action space; a clear error for spaces we cannot handle."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead([action_space.n], multi=False, start=[action_space.start])
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        return CategoricalHead(action_space.nvec.tolist(), multi=True, start=action_space.start.tolist())
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(action_space.shape[0], log_std_init)
    raise ConfigError(
        f"unsupported action space {action_space}; supported: Discrete, MultiDiscrete (1-D) "
        "and 1-D Box"
    )
