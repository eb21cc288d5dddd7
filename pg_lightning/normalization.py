"""Running statistics for observation and reward normalisation, pooled over processes.

``RunningMeanStd`` keeps them as buffers (checkpoints and exported policies carry them);
``pooled_moments`` reduces a batch to its moments over every process's rows, in float64 on the
CPU (no float64 tensor ever lives on an accelerator, which MPS would refuse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L
import torch
from torch import Tensor, nn

from pg_lightning.distributed import gather_rows
from pg_lightning.returns import running_returns

if TYPE_CHECKING:
    from pg_lightning.data import Batch


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


def fold_statistics(
    trainer: L.Trainer, batch: Batch, obs_rms: RunningMeanStd | None, reward_rms: RunningMeanStd | None,
    running_return: Tensor, gamma: float,
) -> Tensor:
    """Fold a batch's real transitions into the observation and reward statistics (pooled over
    processes); returns the running discounted return per batch column to carry to the next batch."""
    mask = batch.mask
    if obs_rms is not None:
        obs_rms.update(*pooled_moments(trainer, batch.observations[mask].flatten(1)))
    if reward_rms is None:
        return running_return
    sums = running_returns(batch.rewards.cpu(), batch.terminated.cpu(), batch.truncated.cpu(), gamma, running_return)
    reward_rms.update(*pooled_moments(trainer, sums[mask.cpu()].unsqueeze(-1)))
    return sums[-1] * ~(batch.terminated | batch.truncated)[-1].cpu()
