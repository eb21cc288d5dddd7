"""``SeedStack``: K policies as one parameter table, and ``StackedAdam`` over it — each seed's
forward, gradient, clip and Adam step are its own policy's (to float tolerance)."""

from __future__ import annotations

import copy

import gymnasium as gym
import pytest
import torch
from user_envs import TinyTrunk

from pg_lightning.optim import StackedAdam
from pg_lightning.policies import ActorCritic
from pg_lightning.seed_stack import SeedStack, stackable

BOX, DISCRETE = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(3)
NETWORKS = {  # (action space, policy arguments)
    "shared-relu": (DISCRETE, {"hidden_sizes": [16, 16], "activation": "relu", "critic": "shared"}),
    "separate-tanh-normalized": (DISCRETE, {"hidden_sizes": [8], "activation": "tanh", "critic": "separate",
                                            "normalize_observations": True}),
    "gaussian-elu": (gym.spaces.Box(-1, 1, (2,)), {"hidden_sizes": [8], "activation": "elu", "critic": "separate",
                                                   "log_std_init": -0.5}),
    "policy-only-silu": (DISCRETE, {"hidden_sizes": [8, 8], "activation": "silu", "critic": "none"}),
}


def policies(name: str, k: int = 3) -> list[ActorCritic]:
    actions, kwargs = NETWORKS[name]
    made = []
    for seed in range(k):
        torch.manual_seed(seed)
        policy = ActorCritic(BOX, actions, **kwargs)
        if policy.obs_rms is not None:  # distinct statistics per seed
            policy.obs_rms.mean.uniform_(-0.5, 0.5)
            policy.obs_rms.var.uniform_(0.5, 2.0)
        made.append(policy)
    return made


def batch(k: int, b: int, actions: gym.Space) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(10)
    obs = torch.randn(k, b, 3) * 2
    sampled = torch.randn(k, b, 2) if isinstance(actions, gym.spaces.Box) else torch.randint(0, 3, (k, b))
    return obs, sampled


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_each_seeds_outputs_and_gradients_are_its_own_policys(name):
    stacked, alone = policies(name), policies(name)
    stack = SeedStack(stacked)
    obs, actions = batch(3, 5, NETWORKS[name][0])
    log_probs, entropy, values = stack.evaluate(stack.normalize(obs), actions)
    assert log_probs.shape == entropy.shape == (3, 5)
    (log_probs.sum() + entropy.sum() + (values.sum() if values is not None else 0)).backward()
    for k, policy in enumerate(alone):
        lp, ent, v = policy.evaluate(obs[k], actions[k])
        torch.testing.assert_close(log_probs[k], lp)
        torch.testing.assert_close(entropy[k], ent)
        if v is not None:
            torch.testing.assert_close(values[k], v)
            torch.testing.assert_close(stack.value(stack.normalize(obs))[k], policy.value(obs[k]))
        (lp.sum() + ent.sum() + (v.sum() if v is not None else 0)).backward()
        for param_name, param in policy.named_parameters():  # seed k's rows of the gradient table
            torch.testing.assert_close(stack.leaves[param_name].grad[k], param.grad, msg=param_name)


def test_a_subset_of_seeds_is_evaluated_on_its_own_rows():
    stack = SeedStack(policies("separate-tanh-normalized"))
    obs, actions = batch(2, 4, DISCRETE)
    rows = torch.tensor([2, 0])
    log_probs, _, values = stack.evaluate(stack.normalize(obs, rows), actions, rows)
    for position, k in enumerate(rows.tolist()):
        lp, _, v = stack.policies[k].evaluate(obs[position], actions[position])
        torch.testing.assert_close(log_probs[position], lp)
        torch.testing.assert_close(values[position], v)


def test_each_seeds_parameters_are_views_of_its_row():
    stack = SeedStack(policies("shared-relu"))
    weight = stack.policies[1].get_parameter("trunk.0.weight")
    with torch.no_grad():
        stack.leaves["trunk.0.weight"][1, 0, 0] = 7.0
    assert weight[0, 0] == 7.0 and stack.policies[0].get_parameter("trunk.0.weight")[0, 0] != 7.0
    assert stack.table.shape == (3, sum(p.numel() for p in stack.policies[0].parameters()))


def test_stackable_only_for_several_built_in_mlps():
    assert stackable(policies("shared-relu"))
    assert not stackable(policies("shared-relu", k=1))
    network = {"class_path": "user_envs.TinyTrunk", "init_args": {"width": 4}}
    own = [ActorCritic(BOX, DISCRETE, [8], network=network) for _ in range(2)]
    assert isinstance(own[0].encoder, TinyTrunk) and not stackable(own)


def test_each_seed_is_clipped_by_its_own_norm_and_a_non_finite_seed_is_zeroed():
    stack = SeedStack(policies("shared-relu"))
    torch.manual_seed(0)
    stack.grads.copy_(torch.randn_like(stack.grads) * torch.tensor([[0.01], [10.0], [1.0]]))
    stack.grads[2, 5] = float("nan")
    expected = []
    for row in stack.grads[:2]:  # torch's clip of each seed's gradients alone
        param = torch.zeros_like(row, requires_grad=True)
        param.grad = row.clone()
        torch.nn.utils.clip_grad_norm_([param], 1.0)
        expected.append(param.grad)
    expected = torch.stack(expected)
    assert expected[0].norm() < 1.0 and expected[1].norm() == pytest.approx(1.0, rel=1e-5)  # one unclipped, one clipped
    finite = stack.guard_and_clip(1.0)
    assert finite.tolist() == [True, True, False]
    torch.testing.assert_close(stack.grads[:2], expected)
    assert torch.count_nonzero(stack.grads[2]) == 0
    assert stack.guard_and_clip(None).tolist() == [True, True, True]  # no clip: only the check


def fill_gradients(stack: SeedStack, step: int) -> None:
    torch.manual_seed(100 + step)
    stack.grads.copy_(torch.randn_like(stack.grads))


def test_stacked_adam_is_each_seeds_adam_with_its_own_rate_and_mask():
    stacked, alone = policies("gaussian-elu"), policies("gaussian-elu")
    stack = SeedStack(stacked)
    adam = StackedAdam(list(stack.leaves.values()), stack.table, stack.grads, lr=0.01)
    adam.lr_scale.copy_(torch.tensor([1.0, 0.5, 0.25]))
    references = [torch.optim.Adam(p.parameters(), lr=0.01 * scale) for p, scale in zip(alone, (1.0, 0.5, 0.25))]
    frozen = copy.deepcopy(alone[2].state_dict())
    for step in range(4):
        fill_gradients(stack, step)
        adam.stepping.copy_(torch.tensor([True, True, step == 0]))  # seed 2 steps once, then is masked
        adam.step()
        for k, (policy, reference) in enumerate(zip(alone, references)):
            if k == 2 and step > 0:
                continue
            for name, param in policy.named_parameters():
                param.grad = stack.leaves[name].grad[k].clone()
            reference.step()
        if step == 0:
            frozen = copy.deepcopy(alone[2].state_dict())
    for k, policy in enumerate(alone):
        for name, param in policy.named_parameters():
            torch.testing.assert_close(stack.policies[k].get_parameter(name), param, msg=f"seed {k} {name}")
    assert adam.steps.tolist() == [4, 4, 1]
    for name, value in frozen.items():  # the masked seed changed no more after its one step
        torch.testing.assert_close(stack.policies[2].state_dict()[name], value)


def test_stacked_adam_state_round_trips_and_each_row_is_a_torch_adam_state():
    stack = SeedStack(policies("shared-relu"))
    adam = StackedAdam(list(stack.leaves.values()), stack.table, stack.grads, lr=0.01)
    for step in range(2):
        fill_gradients(stack, step)
        adam.step()
    state = copy.deepcopy(adam.state_dict())
    other = SeedStack(policies("shared-relu"))
    restored = StackedAdam(list(other.leaves.values()), other.table, other.grads, lr=0.01)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.exp_avg, adam.exp_avg)
    torch.testing.assert_close(restored.exp_avg_sq, adam.exp_avg_sq)
    assert restored.steps.tolist() == [2, 2, 2]
    assert restored.state[restored.param_groups[0]["params"][0]]["exp_avg"].data_ptr() == restored.exp_avg.data_ptr()
    # row 1 of every tensor is seed 1's own torch Adam state: it loads and steps on as the stack does
    policy = stack.policies[1]
    reference = torch.optim.Adam(copy.deepcopy(policy).parameters(), lr=0.01)
    one = {"state": {i: {key: value[1].clone() for key, value in s.items()} for i, s in state["state"].items()},
           "param_groups": [{**state["param_groups"][0]}]}
    reference.load_state_dict(one)
    fill_gradients(stack, 2)
    adam.step()
    for param, name in zip(reference.param_groups[0]["params"], stack.leaves):
        param.grad = stack.leaves[name].grad[1].clone()
    reference.step()
    for param, name in zip(reference.param_groups[0]["params"], stack.leaves):
        torch.testing.assert_close(param, policy.get_parameter(name))


def test_zero_grad_points_replaced_gradients_back_into_the_table():
    stack = SeedStack(policies("shared-relu"))
    adam = StackedAdam(list(stack.leaves.values()), stack.table, stack.grads, lr=0.01)
    leaf = stack.leaves["actor_out.weight"]
    leaf.grad = None
    stack.grads.fill_(1.0)
    adam.zero_grad()
    assert torch.count_nonzero(stack.grads) == 0
    leaf.grad.fill_(2.0)
    assert stack.grads.sum() == 2.0 * leaf.numel()
