"""pg_lightning.optim: each shortcut against the torch utility it replaces, bit for bit."""

import copy
import math

import pytest
import torch
from helpers import quiet_trainer

from pg_lightning import A2C, Reinforce, optim
from pg_lightning.optim import Adam, clip_gradients, gradient_norm, gradients_finite

SHAPES = [(8, 4), (8,), (3, 8), (3,)]


def parameters(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in SHAPES]


def set_gradients(params: list[torch.nn.Parameter], step: int) -> None:
    generator = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)


PRIVATE_OPS = ["_foreach_norm", "_foreach_mul_", "_foreach_add_", "_fused_adam_", "_non_finite_check_and_unscale_"]


@pytest.fixture(params=["private", "public"])
def ops(request, monkeypatch) -> str:
    """Each gradient utility with torch's private ops, and as it runs on a torch without them."""
    if request.param == "public":
        for name in PRIVATE_OPS:
            monkeypatch.setattr(optim, name, None)
    return request.param


def count_torch_steps(monkeypatch) -> list[int]:
    calls = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (calls.append(1), step(self, *a, **k))[1])
    return calls


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1, "eps": 1e-6, "betas": (0.8, 0.9)}, {"maximize": True}])
def test_adam_equals_torchs_fused_adam_and_takes_the_short_path(options, monkeypatch):
    ours, theirs = parameters(), parameters()
    lean, reference = Adam(ours, lr=1e-2, **options), torch.optim.Adam(theirs, lr=1e-2, fused=True, **options)
    calls = count_torch_steps(monkeypatch)
    for step in range(6):
        for optimizer in (lean, reference):
            optimizer.param_groups[0]["lr"] = 1e-2 * (1 - step / 6)  # as a scheduler would
        set_gradients(ours, step)
        set_gradients(theirs, step)
        lean.step()
        reference.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    for a, b in zip(ours, theirs):
        assert all(torch.equal(lean.state[a][k], reference.state[b][k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert len(calls) == 6 + 1  # the reference's six, and our first step, which creates the state


def test_adam_with_a_group_per_seed_steps_the_groups_with_gradients_as_torch_does(monkeypatch):
    """A many-seeds module has a parameter group per seed; a step may leave some without gradients
    (PPO steps one seed at a time, a stopped seed has none): they stay untouched, state included."""
    seeds = [parameters(k) for k in range(3)]
    twins = [parameters(k) for k in range(3)]
    lean = Adam([{"params": p, "lr": 1e-2 * (k + 1)} for k, p in enumerate(seeds)], lr=1e-2)
    reference = torch.optim.Adam([{"params": p, "lr": 1e-2 * (k + 1)} for k, p in enumerate(twins)], lr=1e-2, fused=True)
    calls = count_torch_steps(monkeypatch)
    for step in range(6):
        stepped = [k for k in range(3) if k == step % 3 or step == 0]  # all at first, then one seed a step
        for group in (*seeds, *twins):
            for p in group:
                p.grad = None
        for k in stepped:
            set_gradients(seeds[k], step)
            set_gradients(twins[k], step)
        lean.step()
        reference.step()
    for mine, theirs in zip(seeds, twins):
        assert all(torch.equal(a, b) for a, b in zip(mine, theirs))
        assert [int(lean.state[p]["step"]) for p in mine] == [int(reference.state[p]["step"]) for p in theirs]
    assert [int(lean.state[seeds[k][0]]["step"]) for k in range(3)] == [2, 3, 3]  # steps 0, 3 / 0, 1, 4 / 0, 2, 5
    assert len(calls) == 6 + 1  # the reference's six, and our first step, which creates the state


def test_adam_evaluates_a_closure_first_and_steps_on_the_gradients_it_leaves(monkeypatch):
    """Lightning steps with a closure that runs backward and the hooks (which may drop gradients)."""
    ours, theirs = parameters(), parameters()
    lean, reference = Adam(ours, lr=1e-2), torch.optim.Adam(theirs, lr=1e-2, fused=True)
    calls = count_torch_steps(monkeypatch)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))

    def closure(params, optimizer, drop):
        def run():
            optimizer.zero_grad()
            loss = (x @ params[0].T + params[1]).tanh() @ params[2].T + params[3]
            loss = loss.pow(2).sum()
            loss.backward()
            if drop:
                params[0].grad = None
            return loss
        return run

    for step in range(4):
        losses = [o.step(closure(p, o, drop=step == 2)) for p, o in ((ours, lean), (theirs, reference))]
        assert torch.equal(*losses) and losses[0].requires_grad  # the closure ran with gradients enabled
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert len(calls) == 4 + 2  # ours: the first step and the dropped gradient's


def test_adam_falls_back_to_torch_for_a_missing_gradient_and_an_amp_scale(monkeypatch):
    ours, theirs = parameters(), parameters()
    lean, reference = Adam(ours, lr=1e-2), torch.optim.Adam(theirs, lr=1e-2, fused=True)
    calls = count_torch_steps(monkeypatch)
    for step, drop in enumerate([None, 1, None]):
        set_gradients(ours, step)
        set_gradients(theirs, step)
        if drop is not None:
            ours[drop].grad = theirs[drop].grad = None  # that parameter is not updated
        lean.step()
        reference.step()
    for optimizer in (lean, reference):  # what a GradScaler sets for an optimizer that unscales itself
        optimizer.grad_scale, optimizer.found_inf = torch.tensor(4.0), torch.tensor(0.0)
    set_gradients(ours, 3)
    set_gradients(theirs, 3)
    lean.step()
    reference.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert len(calls) == 4 + 3  # ours: the first step, the missing gradient, the scale


def test_adam_without_fused_is_torchs_adam(monkeypatch):
    ours, theirs = parameters(), parameters()
    lean, reference = Adam(ours, lr=1e-2, fused=False), torch.optim.Adam(theirs, lr=1e-2)
    calls = count_torch_steps(monkeypatch)
    for step in range(3):
        set_gradients(ours, step)
        set_gradients(theirs, step)
        lean.step()
        reference.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert len(calls) == 3 + 3  # every step of ours is torch's


def test_adam_checkpoints_like_torchs_adam():
    ours, theirs = parameters(), parameters()
    lean, reference = Adam(ours, lr=1e-2), torch.optim.Adam(theirs, lr=1e-2, fused=True)
    for step in range(2):
        set_gradients(ours, step)
        set_gradients(theirs, step)
        lean.step()
        reference.step()
    resumed_params = parameters()
    resumed = Adam(resumed_params, lr=1e-2)
    resumed.load_state_dict(copy.deepcopy(reference.state_dict()))  # torch's state into ours (as a file would)
    for p, q in zip(resumed_params, theirs):
        p.data.copy_(q.data)
    set_gradients(resumed_params, 2)
    set_gradients(theirs, 2)
    resumed.step()
    reference.step()
    assert all(torch.equal(a, b) for a, b in zip(resumed_params, theirs))
    assert torch.optim.Adam(parameters(), lr=1e-2, fused=True).load_state_dict(lean.state_dict()) is None


@pytest.mark.parametrize("max_norm", [0.5, 1e3])  # clipped, and left alone
def test_clip_gradients_is_torchs_clip(max_norm, ops):
    ours, theirs = parameters(), parameters()
    set_gradients(ours, 0)
    set_gradients(theirs, 0)
    grads = [p.grad for p in ours]
    before = float(gradient_norm(grads))
    clip_gradients(grads, max_norm, gradient_norm(grads))
    torch.nn.utils.clip_grads_with_norm_(theirs, max_norm, torch.nn.utils.get_total_norm([p.grad for p in theirs]))
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs))
    assert float(gradient_norm(grads)) == pytest.approx(min(max_norm, before), rel=1e-5)


def test_gradient_norm_is_torchs_total_norm(ops):
    params = parameters()
    set_gradients(params, 0)
    grads = [p.grad for p in params]
    assert torch.equal(gradient_norm(grads), torch.nn.utils.get_total_norm(grads))
    assert math.isclose(float(gradient_norm(grads)), math.sqrt(sum(float(g.pow(2).sum()) for g in grads)), rel_tol=1e-6)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), -float("inf")])
def test_gradients_finite_finds_any_non_finite_entry_and_changes_nothing(bad, ops):
    params = parameters()
    set_gradients(params, 0)
    if bad is not None:
        params[2].grad[1, 5] = bad
    before = [p.grad.clone() for p in params]
    assert gradients_finite([p.grad for p in params]) is (bad is None)
    torch.testing.assert_close([p.grad for p in params], before, rtol=0, atol=0, equal_nan=True)


@pytest.fixture
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_finite_under_a_float64_default_dtype(dtype, float64_default, ops):
    grads = [torch.randn(3, 4, dtype=dtype), torch.randn(5, dtype=dtype)]
    assert gradients_finite(grads)
    grads[1][2] = float("inf")
    assert not gradients_finite(grads)


@pytest.mark.parametrize("fused", [True, False])
def test_adam_runs_the_step_hooks_once_a_step_on_every_path(fused):
    torch.optim.Adam(parameters(), fused=True)  # torch wraps its own Adam.step with the hooks once one is built
    params = parameters()
    optimizer = Adam(params, lr=1e-2, fused=fused)
    pre, post = [], []
    optimizer.register_step_pre_hook(lambda *args: pre.append(1))
    optimizer.register_step_post_hook(lambda *args: post.append(1))
    for step, drop in enumerate([None, None, 1, None]):  # torch's step (the state, a missing gradient) and the short path
        set_gradients(params, step)
        if drop is not None:
            params[drop].grad = None
        optimizer.step()
    assert len(pre) == len(post) == 4


def test_private_ops_are_looked_up_and_missing_ones_are_none(monkeypatch):
    assert all(getattr(optim, name) is not None for name in PRIVATE_OPS)  # this torch has them all
    monkeypatch.delattr(torch, "_fused_adam_")
    assert optim.private_op("_fused_adam_") is None and optim.private_op("_foreach_norm") is torch._foreach_norm


@pytest.mark.parametrize("name", PRIVATE_OPS)
def test_training_without_each_private_op_equals_training_with_it(name, monkeypatch):
    """Each private op forced away (as on a torch without it): a few updates train, bit for bit the same."""
    def train():
        # the finiteness check runs where nothing is clipped, the norm and clip where something is
        make = Reinforce if name == "_non_finite_check_and_unscale_" else A2C
        module = make(seed=0, max_grad_norm=None if make is Reinforce else 0.5)
        quiet_trainer(max_epochs=4).fit(module)
        return module, [p.detach().clone() for p in module.parameters()]

    _, fast = train()
    monkeypatch.setattr(optim, name, None)
    calls = count_torch_steps(monkeypatch)
    module, public = train()
    assert all(torch.equal(a, b) for a, b in zip(fast, public))
    assert module.skipped_updates == 0
    assert len(calls) == (4 if name in ("_foreach_add_", "_fused_adam_") else 1)  # only the first step's, else
