"""Unit tests for pg_lightning.numpy_actor: the heads' numpy draws, the numpy MLP against the torch
actor, and the one-env sampler's exponential race against the batched sampler."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.testing import assert_close

from pg_lightning.distributions import CategoricalHead, GaussianHead
from pg_lightning.numpy_actor import ExponentialRace, categorical_sampler, numpy_mlp, one_env_categorical
from pg_lightning.policies import ActorCritic

CARTPOLE_OBS = gym.spaces.Box(-np.inf, np.inf, (4,), dtype=np.float32)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rng(seed):
    return np.random.default_rng(seed)


def draw(head, params, seed):
    """Samples from a head's numpy sampler, as a tensor."""
    return torch.as_tensor(head.numpy_sampler()(params.numpy(), rng(seed)))


# --------------------------------------------------------------------------------------------
# the heads' draws: categorical_sampler, gaussian_sampler
# --------------------------------------------------------------------------------------------


def test_categorical_head_sampling_frequencies_match_softmax():
    head = CategoricalHead([4], multi=False)
    logits = torch.tensor([0.5, -1.0, 1.2, 0.0])
    n = 20000
    params = logits.expand(n, 4)
    samples = draw(head, params, 123)
    assert samples.shape == (n,)
    freqs = torch.bincount(samples, minlength=4).float() / n
    assert_close(freqs, logits.softmax(-1), atol=0.02, rtol=0)


def test_multidiscrete_sampling_frequencies_per_component():
    head = CategoricalHead([2, 3], multi=True)
    logits = torch.tensor([1.0, -0.5, 0.2, 0.9, -1.5])
    n = 20000
    samples = draw(head, logits.expand(n, 5), 7)
    f0 = torch.bincount(samples[:, 0], minlength=2).float() / n
    f1 = torch.bincount(samples[:, 1], minlength=3).float() / n
    assert_close(f0, logits[:2].softmax(-1), atol=0.02, rtol=0)
    assert_close(f1, logits[2:].softmax(-1), atol=0.02, rtol=0)


def test_sampling_is_deterministic_given_generator():
    head = CategoricalHead([6], multi=False)
    params = torch.randn(500, 6, generator=gen(0))
    a = draw(head, params, 42)
    b = draw(head, params, 42)
    c = draw(head, params, 43)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)

    g_head = GaussianHead(2, 0.0)
    mu = torch.randn(500, 2, generator=gen(1))
    assert torch.equal(draw(g_head, mu, 5), draw(g_head, mu, 5))
    assert not torch.equal(draw(g_head, mu, 5), draw(g_head, mu, 6))


def test_gaussian_head_sample_moments():
    head = GaussianHead(2, 0.0)
    with torch.no_grad():
        head.log_std.copy_(torch.tensor([0.0, np.log(3.0)]))
    mu = torch.tensor([1.0, -2.0]).expand(20000, 2)
    s = draw(head, mu, 0)
    assert_close(s.mean(0), torch.tensor([1.0, -2.0]), atol=0.1, rtol=0)
    assert_close(s.std(0), torch.tensor([1.0, 3.0]), atol=0.1, rtol=0)


# --------------------------------------------------------------------------------------------
# numpy_mlp (through ActorCritic.sampler) and ExponentialRace (through one_env_sampler)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "silu"])
@pytest.mark.parametrize("normalize", [False, True])
def test_numpy_sampler_runs_the_same_network_as_torch(activation, normalize):
    """The collector's numpy copy of the actor must compute exactly the torch actor's outputs."""
    model = ActorCritic(CARTPOLE_OBS, gym.spaces.Box(-1.0, 1.0, (3,)), hidden_sizes=(16, 8),
                        activation=activation, normalize_observations=normalize, log_std_init=-30.0)
    if normalize:
        model.obs_rms.update(torch.tensor([1.0, -2.0, 0.5, 3.0]), torch.tensor([4.0, 0.25, 1.0, 9.0]), 100)
    obs = torch.randn(64, 4, generator=gen(0)) * 3
    # with a vanishing std the sample is the mean, i.e. the network's output
    sample = model.sampler()(obs.numpy(), rng(0))
    assert_close(torch.as_tensor(sample), model(obs), atol=1e-5, rtol=1e-5)


def test_numpy_sampler_is_a_frozen_copy():
    model = ActorCritic(CARTPOLE_OBS, gym.spaces.Box(-1.0, 1.0, (2,)), log_std_init=-30.0)
    obs = np.ones((1, 4), np.float32)
    sampler = model.sampler()
    before = sampler(obs, rng(0))
    with torch.no_grad():
        model.actor_out.bias.add_(1.0)
    assert np.allclose(sampler(obs, rng(0)), before)  # the weights it saw, not the live ones
    assert np.allclose(model.sampler()(obs, rng(0)), before + 1.0, atol=1e-5)


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(2), gym.spaces.Discrete(5), gym.spaces.Box(-1.0, 1.0, (2,))])
@pytest.mark.parametrize("normalize", [False, True])
def test_one_env_sampler_draws_what_the_batched_sampler_draws(action_space, normalize):
    """One observation at a time (the one-env collection path, whose categorical draws come from
    blocks drawn ahead) gives the batched sampler's actions, and leaves the generator where it
    would: across several blocks, with the blocks' unused draws given back."""
    model = ActorCritic(CARTPOLE_OBS, action_space, hidden_sizes=(16, 8), normalize_observations=normalize)
    if normalize:
        model.obs_rms.update(torch.tensor([1.0, -2.0, 0.5, 3.0]), torch.tensor([4.0, 0.25, 1.0, 9.0]), 100)
    obs = (torch.randn(300, 4, generator=gen(1)) * 2).numpy()
    batched, expected_rng = model.sampler(), rng(3)
    expected = [batched(o[None], expected_rng)[0] for o in obs]
    one_env_rng = rng(3)
    sample, close = model.one_env_sampler(one_env_rng)
    actions = [sample(o) for o in obs]
    close()
    assert np.array_equal(np.array(actions), np.array(expected))
    assert np.array(actions).dtype == np.array(expected).dtype
    assert one_env_rng.bit_generator.state == expected_rng.bit_generator.state
    assert len(set(np.array(actions).reshape(len(obs), -1)[:, 0].tolist())) > 1  # not a constant policy


# --------------------------------------------------------------------------------------------
# the functions themselves, on arrays
# --------------------------------------------------------------------------------------------


def test_numpy_mlp_normalises_clips_and_applies_each_layer():
    w1, b1 = np.array([[1.0, -1.0]], np.float32), np.array([0.5, 0.0], np.float32)
    w2, b2 = np.array([[2.0], [3.0]], np.float32), np.array([-1.0], np.float32)
    forward = numpy_mlp([(w1, b1)], (w2, b2), "relu", np.array([1.0], np.float32), np.array([0.5], np.float32), 2.0)
    x = np.array([[3.0], [-9.0]], np.float32)  # normalised: 1.0 and -5.0, clipped to -2.0
    hidden = np.maximum(np.clip((x - 1.0) * 0.5, -2.0, 2.0) @ w1 + b1, 0.0)
    assert np.array_equal(forward(x), hidden @ w2 + b2)


@pytest.mark.parametrize("n, start", [(2, 0), (5, 0), (3, -1)])
def test_exponential_race_draws_the_categorical_samplers_actions_and_stream(n, start):
    """Across several blocks drawn ahead: the batched sampler's actions on batches of one, and
    ``close`` leaves the generator where the batched sampler leaves it."""
    logits = np.random.default_rng(0).normal(size=(300, n))
    sample, expected_rng = categorical_sampler([n], False, [start]), rng(4)
    expected = [int(sample(row[None], expected_rng)[0]) for row in logits]
    race_rng = rng(4)
    one, close = one_env_categorical(lambda x: x, race_rng, n, start)
    actions = [one(row) for row in logits]
    close()
    assert actions == expected and race_rng.bit_generator.state == expected_rng.bit_generator.state
    assert len(set(actions)) == n


def test_exponential_race_close_without_draws_leaves_the_generator_unchanged():
    generator = rng(1)
    before = generator.bit_generator.state
    ExponentialRace(generator, 3).close()
    assert generator.bit_generator.state == before
