"""``lockstep.minibatch_plan``: each seed's minibatches are those of its one-seed PPO pass."""

from __future__ import annotations

import torch

from pg_lightning.lockstep import minibatch_plan


def one_seed_minibatches(mask: torch.Tensor, parts: int, shuffle: torch.Generator) -> list[torch.Tensor]:
    """PPO.update's pass: the real rows, shuffled when there is more than one part, tensor_split."""
    real = mask.nonzero().flatten()
    if parts > 1:
        real = real[torch.randperm(len(real), generator=shuffle)]
    return list(real.tensor_split(parts))


def test_each_seed_gets_its_one_seed_minibatches_padded_and_masked():
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[0, [2, 7]] = False  # autoreset steps: 10 real rows
    mask[2, 5] = False  # 11 real rows
    parts = [3, 1, 4]
    positions, valid = minibatch_plan(mask, parts, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    assert positions.shape == valid.shape == (3, 4, 12)  # the most parts, the largest minibatch (seed 1: all 12)
    for k in range(3):
        expected = one_seed_minibatches(mask[k], parts[k], torch.Generator().manual_seed(k + 1))
        for j in range(4):
            got = positions[k, j][valid[k, j]]
            assert torch.equal(got, expected[j]) if j < parts[k] else got.numel() == 0
    assert torch.equal(positions[1, 0], torch.arange(12))  # one part: every row in order, unshuffled


def test_the_shuffles_advance_as_one_seed_passes_advance_them():
    mask = torch.ones(2, 8, dtype=torch.bool)
    shuffles = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    minibatch_plan(mask, [2, 1], shuffles)
    reference = torch.Generator().manual_seed(5)
    torch.randperm(8, generator=reference)
    assert torch.equal(shuffles[0].get_state(), reference.get_state())
    assert torch.equal(shuffles[1].get_state(), torch.Generator().manual_seed(6).get_state())  # one part: no draw
