"""Many seeds' policies trained as one: their parameters stacked into one ``[K, N]`` table.

Seed k's policy keeps its own ``nn.Parameter``s (checkpoint keys, collection, evaluation and
export read them as in a one-seed run), but each is now a view of row k of ``table``, and
training reads the table's column blocks as ``[K, *shape]`` leaves: one ``baddbmm`` per layer for
every seed at once instead of K small forwards, and one elementwise Adam, one norm, one clip and
one finiteness check on ``[K, N]`` instead of K of each (``optim.StackedAdam``). Seeds share no
parameter, so the sum of the seeds' losses gives each seed exactly its own gradient, in row k of
``grads``. This stacks the MLP over flat observations (any activation, a shared or separate critic,
categorical and Gaussian heads); ``stackable`` says when a run's policies are that network.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pg_lightning.distributions import GaussianHead, gaussian_entropy, gaussian_log_prob
from pg_lightning.policies import ActorCritic


@functools.cache
def _spend_layout_warning() -> None:
    """The leaves' gradients are views of one table, so they are not dense, and torch warns once per
    process that this "may impair performance": here it is the point (one op per step on the whole
    table), so the one warning is spent on a dummy, silenced, leaving the warning filters as they were."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        leaf = torch.zeros(2, 3)[:, :2].requires_grad_()
        leaf.grad = torch.zeros(2, 3)[:, :2]
        leaf.sum().backward()


# activations whose backward reads only their output: in place, they save an allocation and a pass
# over the largest tensors of the step (a third of a 16-seed step's time on this CPU)
IN_PLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_}


def stackable(policies: Sequence[ActorCritic]) -> bool:
    """Whether ``SeedStack`` can train these policies: the built-in MLP over flat observations."""
    return len(policies) > 1 and all(p.numpy_actor_ok for p in policies)


class SeedStack:
    """K policies of one architecture as one parameter table; see the module docstring.

    ``evaluate`` and ``value`` take ``[K', B, ...]`` observations (normalised by ``normalize``)
    of the seeds ``rows`` (indices into the K; ``None``: all of them, in order)."""

    def __init__(self, policies: Sequence[ActorCritic]):
        _spend_layout_warning()
        self.policies = list(policies)
        first = dict(policies[0].named_parameters())
        sizes = [p.numel() for p in first.values()]
        self.table = torch.empty(len(policies), sum(sizes), dtype=next(iter(first.values())).dtype,
                                 device=next(iter(first.values())).device)
        self.grads = torch.zeros_like(self.table)
        self.leaves: dict[str, Tensor] = {}
        offsets = torch.tensor([0, *sizes]).cumsum(0).tolist()
        for (name, param), start, stop in zip(first.items(), offsets, offsets[1:]):
            for k, policy in enumerate(self.policies):
                own = policy.get_parameter(name)
                self.table[k, start:stop] = own.detach().reshape(-1)
                own.data = self.table[k, start:stop].view(param.shape)  # seed k's parameter: row k's block
            leaf = self.table[:, start:stop].view(len(policies), *param.shape).requires_grad_()
            leaf.grad = self.grads[:, start:stop].view_as(leaf)  # backward adds into the table of gradients
            self.leaves[name] = leaf
        self.gaussian = isinstance(policies[0].head, GaussianHead)

    @property
    def num_seeds(self) -> int:
        return len(self.policies)

    def _leaf(self, name: str, rows: Tensor | None) -> Tensor:
        leaf = self.leaves[name]
        return leaf if rows is None else leaf[rows]

    def _linear(self, prefix: str, x: Tensor, rows: Tensor | None) -> Tensor:
        weight, bias = self._leaf(f"{prefix}.weight", rows), self._leaf(f"{prefix}.bias", rows)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    def _mlp(self, prefix: str, layers: nn.Sequential, x: Tensor, rows: Tensor | None) -> Tensor:
        for i, layer in enumerate(layers):  # Linear, activation, Linear, ... (policies.mlp)
            if isinstance(layer, nn.Linear):
                x = self._linear(f"{prefix}.{i}", x, rows)
            else:  # on the fresh output of baddbmm, which its backward does not need
                x = IN_PLACE.get(type(layer), layer)(x)
        return x

    def normalize(self, obs: Tensor, rows: Tensor | None = None) -> Tensor:
        """``[K', B, ...]`` observations through each seed's own running statistics, flattened to
        ``[K', B, D]`` in the network's dtype (``ActorCritic.normalize`` and its inputs, per seed)."""
        policies = self.policies if rows is None else [self.policies[i] for i in rows.tolist()]
        obs = obs.reshape(*obs.shape[:2], -1).to(self.table.dtype)
        if policies[0].obs_rms is None:
            return obs
        statistics = [p.obs_rms for p in policies]
        mean = torch.stack([s.mean.reshape(-1) for s in statistics]).unsqueeze(1)
        std = torch.stack([torch.sqrt(s.var + s.eps).reshape(-1) for s in statistics]).unsqueeze(1)
        clip = statistics[0].clip
        return ((obs - mean) / std).clamp(-clip, clip)

    def evaluate(self, obs: Tensor, actions: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(log π(a|s), entropy, V(s) or None)``, each ``[K', B]``: ``ActorCritic.evaluate`` of
        every seed at once, on normalised observations."""
        first = self.policies[0]
        features = self._mlp("trunk", first.trunk, obs, rows)
        params = self._linear("actor_out", features, rows)
        values = self._values(obs, features, rows) if first.has_critic else None
        if self.gaussian:
            log_std = self._leaf("head.log_std", rows).unsqueeze(1)
            return gaussian_log_prob(params, actions, log_std), gaussian_entropy(params, log_std), values
        return (*first.head.log_prob_entropy(params, actions), values)

    def value(self, obs: Tensor, rows: Tensor | None = None) -> Tensor:
        """``V(s)`` of every seed, ``[K', B]``, on normalised observations."""
        first = self.policies[0]
        features = None if first.critic_trunk is not None else self._mlp("trunk", first.trunk, obs, rows)
        return self._values(obs, features, rows)

    def _values(self, obs: Tensor, features: Tensor | None, rows: Tensor | None) -> Tensor:
        if self.policies[0].critic_trunk is not None:
            features = self._mlp("critic_trunk", self.policies[0].critic_trunk, obs, rows)
        return self._linear("value_out", features, rows).squeeze(-1)

    def norms(self) -> Tensor:
        """Each seed's gradient norm, ``[K]`` (the norm of all its gradients together)."""
        return torch.linalg.vector_norm(self.grads, dim=1)

    def guard_and_clip(self, max_grad_norm: float | None) -> Tensor:
        """Clip each seed's gradients to its own norm ``max_grad_norm`` and zero the gradients of the
        seeds where any is not finite; which seeds' gradients were finite, ``[K]``."""
        if max_grad_norm is None:
            finite = torch.isfinite(self.grads).all(1)
        else:
            norms = self.norms()
            finite = torch.isfinite(norms)
            self.grads.mul_(torch.clamp(max_grad_norm / (norms + 1e-6), max=1.0).unsqueeze(1))
        if not bool(finite.all()):
            self.grads.masked_fill_(~finite.unsqueeze(1), 0.0)
        return finite
