"""``Batch``: collected transitions by field name, what every algorithm's update reads."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from torch import Tensor


@dataclass
class Batch:
    """Transitions in time-major layout ``[T, N, ...]``.

    Episode batches are whole episodes laid end to end in one column (``N = 1``). Observations
    keep the env's dtype (uint8 images stay uint8); Dict / Tuple observations are a flat dict of
    tensors (see ``observations``). ``mask`` is
    False on gymnasium's autoreset steps, which are resets, not transitions; ``next_observations``
    holds s_{t+1} (the final observation where an episode ended). ``episode_returns`` and
    ``episode_lengths`` describe the episodes that finished in this batch; ``discarded_steps``
    counts env steps played for the batch but not in it (episodes an episode batch did not need).
    """

    observations: Tensor | dict[str, Tensor]
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    mask: Tensor
    next_observations: Tensor | dict[str, Tensor]
    episode_returns: Tensor
    episode_lengths: Tensor
    discarded_steps: int = 0

    @cached_property
    def num_steps(self) -> int:
        """Real transitions in the batch (autoreset steps excluded)."""
        return int(self.mask.sum())

    @property
    def env_steps(self) -> int:
        """Env steps this batch cost: its transitions and the discarded ones."""
        return self.num_steps + self.discarded_steps
