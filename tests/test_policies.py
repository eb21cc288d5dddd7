"""Unit tests for pg_lightning.policies: ActorCritic's structure, forward, evaluation and actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Normal
from torch.testing import assert_close

from pg_lightning import A2C, PPO, Reinforce
from pg_lightning.distributions import CategoricalHead
from pg_lightning.observations import check_space
from pg_lightning.policies import ActorCritic, RunningMeanStd

CARTPOLE_OBS = gym.spaces.Box(-np.inf, np.inf, (4,), dtype=np.float32)
CARTPOLE_ACT = gym.spaces.Discrete(2)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rng(seed):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------
# observation spaces: check_space
# --------------------------------------------------------------------------------------------


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
# discrete action spaces with a start: every action is the env's
# --------------------------------------------------------------------------------------------

SHIFTED_SPACES = [gym.spaces.Discrete(3, start=-1), gym.spaces.Discrete(4, start=10),
                  gym.spaces.MultiDiscrete([3, 2], start=[-1, 5])]


def choices(space) -> list[int]:
    """The number of choices of each component of a discrete action space."""
    return space.nvec.tolist() if isinstance(space, gym.spaces.MultiDiscrete) else [int(space.n)]


@pytest.mark.parametrize("action_space", SHIFTED_SPACES, ids=str)
@pytest.mark.parametrize("obs_space", [CARTPOLE_OBS, gym.spaces.Discrete(6)], ids=["numpy", "torch"])
def test_sampled_and_deterministic_actions_lie_in_a_space_with_start(action_space, obs_space):
    """The numpy and torch samplers, the one-env sampler and ``forward`` give the env's actions
    (``start`` added, every choice reachable), and ``log_prob`` of an action is its choice index's."""
    torch.manual_seed(0)
    model = ActorCritic(obs_space, action_space, hidden_sizes=(16,))
    assert model._runs_in_numpy() == (obs_space is CARTPOLE_OBS)
    nvec, start = choices(action_space), np.asarray(action_space.start).reshape(-1)
    with torch.no_grad():  # logits near zero: every choice is sampled
        model.actor_out.weight.mul_(0.01)
    obs = np.stack([obs_space.sample() for _ in range(400)]).astype(obs_space.dtype)
    sampled = model.sampler()(obs, rng(0))
    sample, close = model.one_env_sampler(rng(0))
    one_by_one = np.array([sample(o) for o in obs])
    close()
    assert np.array_equal(one_by_one, sampled)
    assert all(action_space.contains(a if a.ndim else a.item()) for a in sampled)
    index = sampled.reshape(len(obs), -1) - start
    assert [len(set(index[:, k].tolist())) for k in range(len(nvec))] == nvec
    with torch.no_grad():  # the first choice of every component is the mode: the action is `start`
        model.actor_out.bias[np.cumsum([0, *nvec[:-1]])] = 50.0
        mode = model(torch.as_tensor(obs))
    assert np.array_equal(mode.numpy().reshape(len(obs), -1), np.broadcast_to(start, (len(obs), len(nvec))))
    with torch.no_grad():
        params = model._actor_params(*model._inputs(torch.as_tensor(obs)))
        log_probs = model.evaluate(torch.as_tensor(obs), torch.as_tensor(sampled))[0]
    expected = sum(Categorical(logits=p).log_prob(torch.as_tensor(index[:, k]))
                   for k, p in enumerate(params.split(nvec, -1)))
    assert_close(log_probs, expected)


ENV_WITH_START = "user_envs:UserEnvs/ShiftedActions-v0"
SHIFTED_LEARNERS = {
    "Reinforce": lambda seed: Reinforce(env_id=ENV_WITH_START, episodes_per_batch=4, lr=0.02, max_env_steps=1500, seed=seed),
    "A2C": lambda seed: A2C(env_id=ENV_WITH_START, num_envs=4, n_steps=8, lr=0.01, hidden_sizes=[32],
                            max_env_steps=1500, seed=seed),
    "PPO": lambda seed: PPO(env_id=ENV_WITH_START, num_envs=1, n_steps=64, minibatch_size=32, hidden_sizes=[32],
                            lr=3e-3, max_env_steps=1500, seed=seed),
}


@pytest.mark.parametrize("algorithm", sorted(SHIFTED_LEARNERS))
def test_each_algorithm_learns_the_one_paying_action_of_a_space_with_start(algorithm):
    """``Discrete(3, start=-1)``, only action -1 pays and an action outside the space raises:
    training, the returns window and deterministic evaluation all play -1 (chance: 8 / 3 per episode)."""
    import user_envs
    from helpers import quiet_trainer

    from pg_lightning.evaluation import evaluate

    learned = []
    for seed in range(3):
        module = SHIFTED_LEARNERS[algorithm](seed)
        quiet_trainer().fit(module)
        score = float(evaluate(module.policy, ENV_WITH_START, 3, 99)["returns"].mean())
        learned.append(module.return_last100 >= 6.0 and score == user_envs.LENGTH)
    assert sum(learned) >= 2, learned
