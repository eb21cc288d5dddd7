"""Unit tests for pg_lightning.policies: heads vs torch.distributions, ActorCritic structure."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal
from torch.testing import assert_close

from pg_lightning.observations import check_space
from pg_lightning.policies import (
    ActorCritic,
    CategoricalHead,
    GaussianHead,
    RunningMeanStd,
    make_head,
)

CARTPOLE_OBS = gym.spaces.Box(-np.inf, np.inf, (4,), dtype=np.float32)
CARTPOLE_ACT = gym.spaces.Discrete(2)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rng(seed):
    return np.random.default_rng(seed)


def draw(head, params, seed):
    """Samples from a head's numpy sampler, as a tensor."""
    return torch.as_tensor(head.numpy_sampler()(params.numpy(), rng(seed)))


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
# make_head / check_observation_space
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


@pytest.mark.parametrize("space", [
    CARTPOLE_OBS,
    gym.spaces.Box(0.0, 1.0, (2, 3)),
    gym.spaces.Box(0, 255, (4,), dtype=np.uint8),
    gym.spaces.Box(0, 1, (10, 10, 4), dtype=bool),
    gym.spaces.Box(0, 255, (84, 84, 3), dtype=np.uint8),
    gym.spaces.Discrete(5, start=2),
    gym.spaces.MultiDiscrete([2, 3]),
    gym.spaces.MultiBinary(3),
    gym.spaces.Dict({"a": gym.spaces.Discrete(2), "b": gym.spaces.Tuple((CARTPOLE_OBS, gym.spaces.MultiBinary(2)))}),
])
def test_supported_observation_spaces(space):
    check_space(space)


@pytest.mark.parametrize("space, named", [
    (gym.spaces.Text(5), "Text"),
    (gym.spaces.Dict({"ok": CARTPOLE_OBS, "bad": gym.spaces.Text(3)}), "entry 'bad'"),
    (gym.spaces.Box(0, 255, (20, 20, 3), dtype=np.uint8), "36×36"),
    (gym.spaces.MultiDiscrete([[2, 3], [4, 5]]), "MultiDiscrete"),
])
def test_unsupported_observation_spaces_fail_in_one_line_naming_them(space, named):
    with pytest.raises(ValueError) as excinfo:
        check_space(space)
    message = str(excinfo.value)
    assert named in message and "\n" not in message


def test_actor_critic_rejects_unsupported_observations():
    with pytest.raises(ValueError, match="Text"):
        ActorCritic(gym.spaces.Text(5), CARTPOLE_ACT)


# --------------------------------------------------------------------------------------------
# ActorCritic
# --------------------------------------------------------------------------------------------


def _leaf_modules(model):
    return [m for m in model.modules() if not list(m.children())]


def test_actor_critic_default_is_seed_network():
    torch.manual_seed(0)
    model = ActorCritic(CARTPOLE_OBS, CARTPOLE_ACT)
    leaves = [m for m in _leaf_modules(model) if not isinstance(m, (CategoricalHead, nn.Flatten))]
    assert isinstance(model.encoder.parts, nn.Flatten)  # flat observations: the encoder has no parameters
    assert [type(m) for m in leaves] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (leaves[0].in_features, leaves[0].out_features) == (4, 128)
    assert (leaves[2].in_features, leaves[2].out_features) == (128, 2)
    assert model.critic_trunk is None and model.value_out is None and not model.has_critic
    assert model.obs_rms is None
    assert sum(p.numel() for p in model.parameters()) == 4 * 128 + 128 + 128 * 2 + 2
    # forward is argmax of Linear -> ReLU -> Linear
    obs = torch.randn(10, 4, generator=gen(0))
    logits = leaves[2](torch.relu(leaves[0](obs)))
    assert torch.equal(model(obs), logits.argmax(-1))
    lp, ent, v = model.evaluate(obs, logits.argmax(-1))
    assert v is None
    assert_close(lp, Categorical(logits=logits).log_prob(logits.argmax(-1)))
    assert_close(ent, Categorical(logits=logits).entropy())


def test_actor_critic_value_raises_without_critic():
    model = ActorCritic(CARTPOLE_OBS, CARTPOLE_ACT)
    with pytest.raises(RuntimeError, match="critic"):
        model.value(torch.zeros(3, 4))


def test_actor_critic_shared_vs_separate_structure():
    shared = ActorCritic(CARTPOLE_OBS, CARTPOLE_ACT, critic="shared")
    separate = ActorCritic(CARTPOLE_OBS, CARTPOLE_ACT, critic="separate")
    shared_names = {n for n, _ in shared.named_parameters()}
    separate_names = {n for n, _ in separate.named_parameters()}
    assert shared.critic_trunk is None
    assert not any(n.startswith("critic_trunk") for n in shared_names)
    assert shared_names == {
        "trunk.0.weight", "trunk.0.bias", "actor_out.weight", "actor_out.bias",
        "value_out.weight", "value_out.bias",
    }
    assert separate_names == shared_names | {"critic_trunk.0.weight", "critic_trunk.0.bias"}
    assert (shared.value_out.in_features, shared.value_out.out_features) == (128, 1)
    assert [type(m) for m in separate.critic_trunk] == [nn.Linear, nn.ReLU]
    assert separate.critic_trunk[0].weight.shape == (128, 4)
    assert separate.critic_trunk[0].weight is not separate.trunk[0].weight
    assert shared.has_critic and separate.has_critic


def test_actor_critic_value_depends_on_trunk_only_when_shared():
    obs = torch.randn(6, 4, generator=gen(0))
    for critic, depends in (("shared", True), ("separate", False)):
        torch.manual_seed(1)
        model = ActorCritic(CARTPOLE_OBS, CARTPOLE_ACT, critic=critic)
        before = model.value(obs)
        assert before.shape == (6,)
        _, _, v_eval = model.evaluate(obs, torch.zeros(6, dtype=torch.long))
        assert_close(v_eval, before)
        with torch.no_grad():
            model.trunk[0].weight.mul_(-3.0)
        after = model.value(obs)
        assert (not torch.allclose(before, after)) == depends


def test_actor_critic_hidden_sizes_and_activation():
    model = ActorCritic(
        CARTPOLE_OBS, gym.spaces.Discrete(3), hidden_sizes=(64, 32), activation="tanh",
        critic="separate",
    )
    assert [type(m) for m in model.trunk] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh]
    assert [(m.in_features, m.out_features) for m in model.trunk if isinstance(m, nn.Linear)] == [
        (4, 64), (64, 32)
    ]
    assert [type(m) for m in model.critic_trunk] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh]
    assert (model.actor_out.in_features, model.actor_out.out_features) == (32, 3)
    assert model.value_out.in_features == 32

    linear = ActorCritic(CARTPOLE_OBS, CARTPOLE_ACT, hidden_sizes=())
    assert len(linear.trunk) == 0
    assert (linear.actor_out.in_features, linear.actor_out.out_features) == (4, 2)


def test_actor_critic_deterministic_act_is_argmax_discrete():
    model = ActorCritic(CARTPOLE_OBS, gym.spaces.Discrete(5))
    obs = torch.randn(50, 4, generator=gen(0))
    logits = model.actor_out(model.trunk(obs))
    assert torch.equal(model(obs), logits.argmax(-1))
    # sampled actions are in range and reproducible with a seeded generator
    a1 = model.sampler()(obs.numpy(), rng(9))
    assert np.array_equal(a1, model.sampler()(obs.numpy(), rng(9)))
    assert ((a1 >= 0) & (a1 < 5)).all()


def test_actor_critic_deterministic_act_is_mean_gaussian():
    act_space = gym.spaces.Box(-1.0, 1.0, (2,))
    model = ActorCritic(CARTPOLE_OBS, act_space, log_std_init=-1.0)
    obs = torch.randn(8, 4, generator=gen(0))
    mean = model.actor_out(model.trunk(obs))
    assert mean.shape == (8, 2)
    assert_close(model(obs), mean)
    sample = torch.as_tensor(model.sampler()(obs.numpy(), rng(1)))
    assert not torch.allclose(sample, mean)
    lp, ent, _ = model.evaluate(obs, sample)
    normal = Normal(mean, torch.full((2,), -1.0).exp())
    assert_close(lp, normal.log_prob(sample).sum(-1))
    assert_close(ent, normal.entropy().sum(-1))


def test_actor_critic_normalize_observations_uses_running_stats():
    model = ActorCritic(CARTPOLE_OBS, CARTPOLE_ACT, normalize_observations=True)
    assert isinstance(model.obs_rms, RunningMeanStd)
    model.obs_rms.update(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([4.0, 4.0, 1.0, 1.0]), 10)
    obs = torch.randn(5, 4, generator=gen(0))
    expected_inputs = model.obs_rms.normalize(obs)
    logits = model.actor_out(model.trunk(expected_inputs))
    assert torch.equal(model(obs), logits.argmax(-1))
    assert "obs_rms.mean" in model.state_dict()


@pytest.mark.parametrize("normalize", [False, True])
def test_evaluate_on_normalized_observations_equals_evaluate(normalize):
    """PPO normalises a rollout once and evaluates its minibatches with normalized=True."""
    model = ActorCritic(CARTPOLE_OBS, CARTPOLE_ACT, critic="separate", normalize_observations=normalize)
    if normalize:
        model.obs_rms.update(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([4.0, 4.0, 1.0, 1.0]), 10)
    obs, actions = torch.randn(6, 4, generator=gen(1)) * 5, torch.tensor([0, 1, 1, 0, 1, 0])
    inputs = model.normalize(obs)
    assert (inputs is obs) is not normalize
    for index in (slice(None), torch.tensor([4, 0, 2])):  # the whole rollout, a minibatch of it
        direct = model.evaluate(obs[index], actions[index])
        prepared = model.evaluate(inputs[index], actions[index], normalized=True)
        assert all(torch.equal(a, b) for a, b in zip(direct, prepared))
    assert normalize is not torch.equal(model.evaluate(inputs, actions)[0], model.evaluate(obs, actions)[0])


# --------------------------------------------------------------------------------------------
# RunningMeanStd
# --------------------------------------------------------------------------------------------


def test_running_mean_std_two_batches_equal_concatenation():
    rms = RunningMeanStd((3,))
    x1 = 2.0 + 3.0 * torch.randn(50, 3, generator=gen(0), dtype=torch.float64)
    x2 = -1.0 + 0.5 * torch.randn(70, 3, generator=gen(1), dtype=torch.float64)
    for x in (x1, x2):
        rms.update(x.mean(0).float(), x.var(0, correction=0).float(), x.shape[0])
    both = torch.cat([x1, x2])
    assert_close(rms.mean, both.mean(0).float(), atol=1e-5, rtol=1e-5)
    assert_close(rms.var, both.var(0, correction=0).float(), atol=1e-5, rtol=1e-5)
    assert rms.count.dtype == torch.int64 and int(rms.count) == 120


def test_running_mean_std_first_update_and_empty_batch():
    rms = RunningMeanStd(())
    rms.update(torch.tensor(5.0), torch.tensor(2.0), 4)
    assert_close(rms.mean, torch.tensor(5.0))
    assert_close(rms.var, torch.tensor(2.0))
    rms.update(torch.tensor(100.0), torch.tensor(100.0), 0)  # ignored
    assert_close(rms.mean, torch.tensor(5.0))
    assert_close(rms.var, torch.tensor(2.0))
    assert int(rms.count) == 4


def test_running_mean_std_normalize_clamps_and_scales():
    rms = RunningMeanStd((3,), clip=5.0)
    rms.update(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([4.0, 1.0, 1.0]), 10)
    out = rms.normalize(torch.tensor([[101.0, -100.0, 0.5]]))
    # (101 - 1) / 2 = 50 -> clamped to 5;  -100 -> -5;  0.5 / 1 = 0.5
    assert_close(out, torch.tensor([[5.0, -5.0, 0.5]]), atol=1e-6, rtol=1e-6)
    assert_close(rms.normalize(torch.tensor([3.0, 1.0, -2.0])), torch.tensor([1.0, 1.0, -2.0]),
                 atol=1e-6, rtol=1e-6)
    # scale divides by the std without centring
    assert_close(rms.scale(torch.tensor([4.0, 3.0, 3.0])), torch.tensor([2.0, 3.0, 3.0]),
                 atol=1e-6, rtol=1e-6)


def test_running_mean_std_statistics_travel_in_state_dict():
    rms = RunningMeanStd((2,))
    rms.update(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), 5)
    other = RunningMeanStd((2,))
    other.load_state_dict(rms.state_dict())
    assert_close(other.mean, torch.tensor([1.0, 2.0]))
    assert_close(other.var, torch.tensor([3.0, 4.0]))
    assert int(other.count) == 5


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
