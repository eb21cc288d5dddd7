"""Observation and reward normalisation: running statistics, pooled over processes.

``RunningMeanStd`` keeps statistics as buffers (checkpoints and exported policies carry them);
``pooled_moments`` reduces rows to their moments over every process, in float64 on the CPU (no
float64 tensor ever lives on an accelerator, which MPS would refuse); ``Normalizer`` is the run's
owner of both statistics, updated from each collected batch.

Shapes keep leading dimensions for batch dimensions: a statistic of shape ``S`` is updated by rows
``[n, *S]``, and the running discounted return has one entry per batch column.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn

from pg_lightning.distributed import gather_rows
from pg_lightning.returns import running_returns


class RunningMeanStd(nn.Module):
    """Running mean and variance (Chan's parallel update), kept as buffers.

    Statistics only change through ``update`` (called on collected batches), so evaluation and
    export see them frozen.
    """

    def __init__(self, shape: tuple[int, ...] = (), clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(0, dtype=torch.int64))
        self.clip, self.eps = clip, eps

    @torch.no_grad()
    def update(self, batch_mean: Tensor, batch_var: Tensor, batch_count: int) -> None:
        """Merge the moments of a new batch (already pooled across processes, if any)."""
        if batch_count <= 0:
            return
        total = int(self.count) + int(batch_count)
        delta = batch_mean.to(self.mean).view_as(self.mean) - self.mean
        w = batch_count / total
        self.mean += delta * w
        self.var.copy_(self.var * (1 - w) + batch_var.to(self.var).view_as(self.var) * w + delta.pow(2) * w * (1 - w))
        self.count.fill_(total)

    def normalize(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)

    def scale(self, x: Tensor) -> Tensor:
        """Divide by the running std without centring (reward scaling)."""
        return x / torch.sqrt(self.var + self.eps)


def pooled_moments(trainer: L.Trainer, x: Tensor) -> tuple[Tensor, Tensor, int]:
    """Mean and variance of the rows of ``x`` (``[n, d]``) over every process, and the row count."""
    x = x.detach().cpu().double()
    local = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), x.pow(2).sum(0)])
    total = gather_rows(trainer, local).sum(0)
    count, d = int(total[0]), x.shape[1]
    if count == 0:
        return total[1 : 1 + d], total[1 + d :], 0
    mean = total[1 : 1 + d] / count
    return mean, (total[1 + d :] / count - mean.pow(2)).clamp_min(0), count


class Normalizer(nn.Module):
    """A run's normalisation statistics: the observation statistics (the policy's ``obs_rms``,
    referenced here: the policy applies them and its checkpoint keys and exports carry them) and
    the reward statistics, the spread of the running discounted return (gymnasium's
    NormalizeReward), with that return per batch column (``[N]`` of the ``[T, N]`` batches).

    Its ``state_dict`` holds the reward statistics; the running return restarts with every
    episode (``restart``), so checkpoints do not keep it.
    """

    def __init__(self, observations: RunningMeanStd | None, normalize_rewards: bool, gamma: float, columns: int):
        super().__init__()
        object.__setattr__(self, "observations", observations)  # referenced, not registered: saved once, by the policy
        self.rewards = RunningMeanStd() if normalize_rewards else None
        self.gamma = gamma
        self.running_return = torch.zeros(columns)  # R_{t-1} of each column, this process's own

    def restart(self) -> None:
        """Every episode starts anew (a new collector, a resumed run): so does the running return."""
        self.running_return = torch.zeros_like(self.running_return)

    def scale_rewards(self, rewards: Tensor) -> Tensor:
        """``rewards`` divided by the running std of discounted returns (unchanged without reward statistics)."""
        return rewards if self.rewards is None else self.rewards.scale(rewards)

    def update(self, trainer: L.Trainer, observations: Tensor, mask: Tensor, rewards: Tensor,
               terminated: Tensor, truncated: Tensor) -> None:
        """Fold a ``[T, N]`` batch's real transitions (``mask``) into the statistics, pooled over
        processes, and carry each column's running return to the next batch."""
        if self.observations is not None:
            self.observations.update(*pooled_moments(trainer, observations[mask].flatten(1)))
        if self.rewards is None:
            return
        sums = running_returns(rewards.cpu(), terminated.cpu(), truncated.cpu(), self.gamma, self.running_return)
        self.rewards.update(*pooled_moments(trainer, sums[mask.cpu()].unsqueeze(-1)))
        self.running_return = sums[-1] * ~(terminated | truncated)[-1].cpu()
