"""Policy export: checkpoint -> load_policy -> TorchScript / ONNX files that act like the policy."""

import re
import sys

import gymnasium as gym
import lightning as L
import numpy as np
import pytest
import torch

from pg_lightning import PPO, Reinforce
from pg_lightning.errors import ConfigError
from pg_lightning.export import export_onnx, export_torchscript, main
from pg_lightning.policies import ActorCritic
from pg_lightning.registry import load_policy

SETUPS = {
    "cartpole-reinforce": lambda: Reinforce(env_id="CartPole-v1", seed=1),
    "pendulum-ppo": lambda: PPO(env_id="Pendulum-v1", normalize_observations=True, n_steps=16, seed=1),
}


@pytest.fixture(scope="module", params=sorted(SETUPS))
def trained(request, tmp_path_factory):
    """``(module, checkpoint path)`` after three updates."""
    module = SETUPS[request.param]()
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    path = tmp_path_factory.mktemp(request.param) / "policy.ckpt"
    trainer.save_checkpoint(path)
    return module.eval(), path


def observations(module, n=100):
    """Random observations, wide enough that normalisation (when on) also clips some of them."""
    g = torch.Generator().manual_seed(0)
    shape = module.observation_space.shape
    rms = module.policy.obs_rms
    if rms is None:
        return torch.randn(n, *shape, generator=g) * 2.0
    return rms.mean + rms.var.sqrt() * torch.randn(n, *shape, generator=g) * 6.0


def assert_same_actions(module, actual, expected):
    if module.policy.obs_rms is None:  # discrete: the argmax must agree exactly
        assert actual.dtype == torch.int64
        assert torch.equal(actual, expected)
    else:
        torch.testing.assert_close(actual, expected)


def test_load_policy_rebuilds_the_trained_policy(trained):
    module, path = trained
    policy = load_policy(path)
    assert not policy.training
    assert policy.state_dict().keys() == module.policy.state_dict().keys()
    for key, value in module.policy.state_dict().items():
        assert torch.equal(policy.state_dict()[key], value), key
    if module.policy.obs_rms is not None:  # the statistics are nontrivial and were saved
        rms = policy.obs_rms
        assert rms.count > 0 and rms.mean.abs().max() > 1e-3 and (rms.var - 1).abs().max() > 1e-2
    obs = observations(module)
    with torch.no_grad():
        assert torch.equal(policy(obs), module.policy(obs))


def test_checkpoints_load_with_weights_only(trained):
    _, path = trained
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["pg_lightning"]["algorithm"] in ("Reinforce", "PPO")


def test_torchscript_export_acts_like_the_policy(trained, tmp_path):
    module, path = trained
    file = export_torchscript(load_policy(path), tmp_path / "policy.pt")
    scripted = torch.jit.load(str(file))
    obs = observations(module)
    with torch.no_grad():
        expected = module.policy(obs)
        assert_same_actions(module, scripted(obs), expected)
        assert_same_actions(module, scripted(obs[:1]), expected[:1])  # any batch size


def test_example_obs_of_the_wrong_shape_is_a_config_error(tmp_path):
    policy = Reinforce().policy  # CartPole: 4-D observations
    with pytest.raises(ConfigError, match=r"of shape \(4,\), got \(2, 5\)"):
        export_torchscript(policy, tmp_path / "p.pt", torch.zeros(2, 5))
    export_torchscript(policy, tmp_path / "p.pt", torch.zeros(4))  # one unbatched observation is fine


@pytest.mark.parametrize("dynamo", [True, False], ids=["torch.export", "torchscript-based"])
def test_onnx_export_acts_like_the_policy(trained, tmp_path, dynamo):
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime")
    pytest.importorskip("onnx", reason="ONNX export needs onnx (pip install 'pg_lightning[onnx]')")
    if dynamo:
        pytest.importorskip("onnxscript", reason="the torch.export-based ONNX exporter needs onnxscript")
    module, path = trained
    file = export_onnx(load_policy(path), tmp_path / "policy.onnx", dynamo=dynamo)
    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    obs = observations(module)
    with torch.no_grad():
        expected = module.policy(obs)
    for batch in (obs, obs[:1]):  # dynamic batch size
        (actions,) = session.run(None, {"obs": batch.numpy().astype(np.float32)})
        assert_same_actions(module, torch.from_numpy(actions), expected[: len(batch)])


def test_onnx_without_onnx_installed_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'pg_lightning\[onnx\]'") as info:
        export_onnx(Reinforce().policy, tmp_path / "p.onnx")
    assert isinstance(info.value, ConfigError)  # so the CLI reports it as one line


def test_cli_writes_torchscript(trained, tmp_path, capsys):
    module, path = trained
    out = tmp_path / "cli/policy.pt"
    assert main([str(path), "--format", "torchscript", "--output", str(out)]) == 0
    obs = observations(module)
    with torch.no_grad():
        assert_same_actions(module, torch.jit.load(str(out))(obs), module.policy(obs))
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"not a checkpoint", "not a PyTorch checkpoint"),
        ({"state_dict": {}}, "not a pg_lightning checkpoint"),
        ({"pg_lightning": {"algorithm": "DQN"}, "state_dict": {}}, "unknown pg_lightning algorithm 'DQN'"),
    ],
    ids=["missing", "junk", "plain", "algorithm"],
)
def test_bad_checkpoints_raise_config_error_and_the_cli_exits_2(tmp_path, capsys, content, message):
    path = tmp_path / "x.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ConfigError, match=message):
        load_policy(path)
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--format", "onnx", "--output", str(tmp_path / "p.onnx")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_sizes": [10**9]}, "hidden_sizes must be integers in [1, 65536], got [1000000000]"),
        ({"env_id": "NoSuchEnv-v0"}, "unknown env_id 'NoSuchEnv-v0'"),
        ({"num_envs": 10**7}, "num_envs must be an integer in [1, 16384]"),
    ],
    ids=["huge network", "unregistered env", "huge vector env"],
)
def test_a_checkpoints_hyperparameters_are_checked_before_anything_is_built(trained, tmp_path, monkeypatch, change, message):
    _, path = trained
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"].update(change)
    foreign = tmp_path / "foreign.ckpt"
    torch.save(checkpoint, foreign)
    built = []
    monkeypatch.setattr("pg_lightning.modules.base.probe_spaces", lambda *a: built.append(a))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_policy(foreign)
    assert not built  # neither env nor network was made


class Opaque:
    """An object a weights_only load refuses."""


def test_unsafe_checkpoints_are_refused_unless_trusted(trained, tmp_path):
    _, path = trained
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["callbacks"] = {"custom": Opaque()}
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save(checkpoint, unsafe)
    with pytest.raises(ConfigError, match=r"cannot be loaded safely .*test_export\.Opaque.*--trust-checkpoint"):
        load_policy(unsafe)
    assert load_policy(unsafe, trusted=True) is not None


def test_lightning_cli_checkpoints_load(trained, tmp_path):
    """LightningCLI adds private ``_class_path`` / ``_instantiator`` hyper-parameters."""
    module, path = trained
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"].update(
        _class_path=f"pg_lightning.modules.{type(module).__name__}",
        _instantiator="lightning.pytorch.cli.instantiate_module",
    )
    cli_path = tmp_path / "cli.ckpt"
    torch.save(checkpoint, cli_path)
    obs = observations(module)
    with torch.no_grad():
        assert torch.equal(load_policy(cli_path)(obs), module.policy(obs))


# ---- what the exported graph takes and gives ----------------------------------------------------
def _onnx_actions(policy, path, obs, dynamo):
    """The actions of ``policy`` exported to ONNX at ``path``, run in ONNX Runtime on ``obs``."""
    ort = pytest.importorskip("onnxruntime", reason="running the ONNX file needs onnxruntime")
    pytest.importorskip("onnx", reason="ONNX export needs onnx (pip install 'pg_lightning[onnx]')")
    if dynamo:
        pytest.importorskip("onnxscript", reason="the torch.export-based ONNX exporter needs onnxscript")
    session = ort.InferenceSession(str(export_onnx(policy, path, dynamo=dynamo)), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"obs": obs.numpy()})[0])


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3, start=-1), gym.spaces.MultiDiscrete([3, 2], start=[-1, 5])], ids=str)
def test_exported_policies_give_actions_of_a_space_with_start(space, tmp_path):
    """TorchScript and both ONNX exporters give the env's actions, ``start`` included."""
    torch.manual_seed(0)
    policy = ActorCritic(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), space)
    obs = torch.randn(200, 4, generator=torch.Generator().manual_seed(1)) * 20
    with torch.no_grad():
        expected = policy(obs)
    assert all(space.contains(a.numpy() if a.dim() else a.item()) for a in expected)
    assert (expected.reshape(200, -1)[:, 0] == -1).any()  # the shifted choice occurs: the check can fail
    assert torch.equal(torch.jit.load(str(export_torchscript(policy, tmp_path / "p.pt")))(obs), expected)
    for dynamo in (False, True):
        assert torch.equal(_onnx_actions(policy, tmp_path / f"p{dynamo}.onnx", obs, dynamo), expected), dynamo


@pytest.mark.parametrize("shape", [(40, 40, 3), (3, 40, 40), (40, 40)], ids=["channels-last", "channels-first", "frame"])
def test_image_policies_export_to_onnx_that_onnx_runtime_runs(shape, tmp_path):
    """The TorchScript-based exporter (``dynamo=False``) wrote a ``Transpose`` with perm -1 for
    channels-last images, which ONNX Runtime refuses to load (the checker passed it)."""
    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    policy = ActorCritic(space, gym.spaces.Discrete(4), hidden_sizes=())
    obs = torch.randint(0, 256, (16, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # logits centred on the batch's: distinct actions for distinct images
        policy.actor_out.weight.mul_(100.0)
        policy.actor_out.bias.sub_(policy.actor_out(policy.encoder(policy._inputs(obs)[0])).mean(0))
        expected = policy(obs)
    assert len(set(expected.tolist())) > 1
    assert torch.equal(_onnx_actions(policy, tmp_path / "p.onnx", obs, dynamo=False), expected)
