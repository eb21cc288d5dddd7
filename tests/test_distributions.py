"""Unit tests for pg_lightning.distributions: the heads against torch.distributions, make_head."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal
from torch.testing import assert_close

from pg_lightning.distributions import CategoricalHead, GaussianHead, make_head


def gen(seed):
    return torch.Generator().manual_seed(seed)


def draw(head, params, seed):
    """Samples from a head's numpy sampler, as a tensor."""
    return torch.as_tensor(head.numpy_sampler()(params.numpy(), np.random.default_rng(seed)))


# --------------------------------------------------------------------------------------------
# heads vs torch.distributions
# --------------------------------------------------------------------------------------------


def test_categorical_head_matches_torch_categorical():
    head = CategoricalHead([5], multi=False)
    params = 3 * torch.randn(64, 5, generator=gen(0))
    actions = torch.randint(0, 5, (64,), generator=gen(1))
    dist = Categorical(logits=params)
    assert_close(head.log_prob(params, actions), dist.log_prob(actions))
    assert_close(head.entropy(params), dist.entropy())
    assert_close(head.mode(params), params.argmax(-1))
    # float-typed actions (as stored in buffers) are accepted too
    assert_close(head.log_prob(params, actions.float()), dist.log_prob(actions))


def test_gaussian_head_matches_normal_summed_over_dims():
    head = GaussianHead(3, log_std_init=0.0)
    with torch.no_grad():
        head.log_std.copy_(torch.tensor([-0.5, 0.3, 1.2]))
    params = torch.randn(32, 3, generator=gen(0))
    actions = params + 2 * torch.randn(32, 3, generator=gen(1))
    normal = Normal(params, head.log_std.exp())
    assert_close(head.log_prob(params, actions), normal.log_prob(actions).sum(-1))
    ent = head.entropy(params)
    assert ent.shape == (32,)
    assert_close(ent, normal.entropy().sum(-1))
    # same as the Independent(Normal, 1) distribution
    ind = Independent(normal, 1)
    assert_close(head.log_prob(params, actions), ind.log_prob(actions))
    assert_close(head.mode(params), params)


def test_gaussian_head_log_prob_gradient_reaches_log_std():
    head = GaussianHead(2, log_std_init=0.0)
    params = torch.zeros(1, 2)
    actions = torch.tensor([[1.0, 0.0]])
    head.log_prob(params, actions).sum().backward()
    # d/d log_std [-0.5 z^2 - log_std] with z = a e^{-log_std}: z^2 - 1 -> [0, -1] at log_std 0
    assert_close(head.log_std.grad, torch.tensor([0.0, -1.0]))


def test_gaussian_head_log_std_init():
    head = make_head(gym.spaces.Box(-1.0, 1.0, (3,)), log_std_init=-0.7)
    assert isinstance(head, GaussianHead)
    assert_close(head.log_std.data, torch.full((3,), -0.7))


def test_multidiscrete_head_matches_independent_categoricals():
    space = gym.spaces.MultiDiscrete([3, 4, 2])
    head = make_head(space)
    assert isinstance(head, CategoricalHead) and head.multi and head.param_dim == 9
    params = 2 * torch.randn(40, 9, generator=gen(0))
    actions = torch.stack(
        [torch.randint(0, n, (40,), generator=gen(10 + i)) for i, n in enumerate([3, 4, 2])], -1
    )
    dists = [Categorical(logits=lg) for lg in params.split([3, 4, 2], -1)]
    expected_lp = sum(d.log_prob(actions[:, i]) for i, d in enumerate(dists))
    expected_ent = sum(d.entropy() for d in dists)
    assert_close(head.log_prob(params, actions), expected_lp)
    assert_close(head.entropy(params), expected_ent)
    mode = head.mode(params)
    assert mode.shape == (40, 3)
    assert_close(mode, torch.stack([d.probs.argmax(-1) for d in dists], -1))
    sample = draw(head, params, 3)
    assert sample.shape == (40, 3)
    assert ((sample >= 0) & (sample < torch.tensor([3, 4, 2]))).all()


# --------------------------------------------------------------------------------------------
# make_head
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Dict({"a": gym.spaces.Discrete(2)}),
        gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))),
        gym.spaces.Text(5),
    ],
    ids=["Dict", "Tuple", "Text"],
)
def test_make_head_rejects_unsupported_spaces_naming_them(space):
    with pytest.raises(ValueError) as excinfo:
        make_head(space)
    msg = str(excinfo.value)
    assert str(space) in msg
    assert type(space).__name__ in msg


def test_make_head_rejects_multidimensional_box_and_multidiscrete():
    with pytest.raises(ValueError):
        make_head(gym.spaces.Box(-1.0, 1.0, (2, 2)))
    with pytest.raises(ValueError):
        make_head(gym.spaces.MultiDiscrete([[2, 3], [4, 5]]))


def test_make_head_dispatch():
    d = make_head(gym.spaces.Discrete(7))
    assert isinstance(d, CategoricalHead) and not d.multi and d.param_dim == 7
    g = make_head(gym.spaces.Box(-1.0, 1.0, (3,)))
    assert isinstance(g, GaussianHead) and g.param_dim == 3
