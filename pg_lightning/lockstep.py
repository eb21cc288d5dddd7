"""Minibatches of many seeds in lockstep: gradient step j of a pass takes every seed's own
minibatch j, so the seeds' steps can run as one (``SeedStack``) while each seed sees exactly the
minibatches its one-seed run would."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


def minibatch_plan(mask: Tensor, parts: Sequence[int], shuffles: Sequence[torch.Generator]) -> tuple[Tensor, Tensor]:
    """One pass over K seeds' rollouts: ``(positions, valid)``, both ``[K, M, S]``.

    Seed k's real transitions (``mask[k]``, ``[K, R]``) are shuffled with ``shuffles[k]`` and split
    into ``parts[k]`` consecutive minibatches sized as ``Tensor.tensor_split`` sizes them, as a
    one-seed PPO pass does (one part: every real transition in order, no shuffle, no draw).
    ``positions[k, j]`` holds minibatch j's indices into the R rows, padded to the largest
    minibatch S; ``valid`` marks the real entries (none for j >= ``parts[k]``: M is the most parts)."""
    pieces, sizes = [], []
    for row, count, shuffle in zip(mask, parts, shuffles):
        real = row.nonzero().flatten()
        if count > 1:
            real = real[torch.randperm(len(real), generator=shuffle).to(real.device)]
        split = real.tensor_split(count)
        pieces += split
        sizes.append([len(piece) for piece in split])
    most = max(parts)
    lengths = torch.tensor([s + [0] * (most - len(s)) for s in sizes], device=mask.device)
    padded = pad_sequence(pieces, batch_first=True)
    positions = padded.new_zeros(len(parts), most, padded.shape[1])
    positions[lengths > 0] = padded  # the pieces in order: seed by seed, minibatch by minibatch
    valid = torch.arange(padded.shape[1], device=mask.device) < lengths.unsqueeze(-1)
    return positions, valid
