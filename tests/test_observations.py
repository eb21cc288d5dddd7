"""Users' own envs, wrappers, networks and observation spaces: images through the CNN, Dict,
Tuple and Discrete observations, exports of each, and watching a trained agent play."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import user_envs
import yaml
from helpers import DevicesSeen, quiet_trainer, user_env
from torch import nn

from pg_lightning import PPO, Reinforce
from pg_lightning.collector import Collector
from pg_lightning.evaluation import evaluate, recorded_env
from pg_lightning.export import export_onnx, export_torchscript
from pg_lightning.networks import NatureCNN
from pg_lightning.observations import preprocess_leaf
from pg_lightning.policies import ActorCritic
from pg_lightning.registry import load_module

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
LEARNED = user_envs.LENGTH - 0.5  # chance scores LENGTH / 2
BANDIT_PPO = dict(num_envs=8, n_steps=16, hidden_sizes=[64], critic="shared", lr=1e-3, minibatch_size=64, update_epochs=4)


def score(module, episodes=20) -> float:
    """Mean return of the deterministic policy over ``episodes`` evaluation episodes."""
    hp = module.hparams
    return float(evaluate(module.policy, hp.env_id, episodes, 12345, hp.env_kwargs, wrappers=hp.wrappers)["returns"].mean())


def train_seeds(make, seeds=(0, 1, 2)) -> list[float]:
    """Scores after training ``make(seed)`` for each seed."""
    scores = []
    for seed in seeds:
        module = make(seed)
        quiet_trainer().fit(module)
        scores.append(score(module))
    return scores


# ---- preprocessing ------------------------------------------------------------------------------
def test_preprocessing_scales_images_channels_first_and_one_hot_encodes():
    image = gym.spaces.Box(0, 255, (40, 40, 3), np.uint8)
    x = torch.randint(0, 256, (2, 40, 40, 3), dtype=torch.uint8)
    out = preprocess_leaf(image, x, torch.float32)
    assert out.shape == (2, 3, 40, 40) and torch.equal(out, x.permute(0, 3, 1, 2).float() / 255)
    first = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)  # stacked frames: channels first already
    assert preprocess_leaf(first, torch.zeros(1, 4, 84, 84, dtype=torch.uint8), torch.float32).shape == (1, 4, 84, 84)
    discrete = gym.spaces.Discrete(3, start=-1)
    assert torch.equal(preprocess_leaf(discrete, torch.tensor([-1, 1]), torch.float32), torch.tensor([[1., 0, 0], [0, 0, 1]]))
    multi = gym.spaces.MultiDiscrete([2, 3])
    assert torch.equal(preprocess_leaf(multi, torch.tensor([[1, 2]]), torch.float32), torch.tensor([[0., 1, 0, 0, 1]]))


def test_dict_policy_reads_every_entry_through_its_own_encoder():
    """The Dict policy equals the MLP on the concatenation of each entry's encoding, in key order."""
    module = PPO(env_id="user_envs:UserEnvs/CueDict-v0", **BANDIT_PPO)
    policy = module.policy
    obs = {"cue": torch.tensor([0, 1]), "noise": torch.rand(2, 3), "extra/0": torch.tensor([[1, 0], [0, 1]], dtype=torch.int8),
           "extra/1": torch.rand(2, 2, 2)}
    features = torch.cat([nn.functional.one_hot(obs["cue"], 2).float(), obs["extra/0"].float(),
                          obs["extra/1"].flatten(1), obs["noise"]], -1)  # keys sorted as gymnasium's Dict sorts them
    assert policy.encoder.keys == ["cue", "extra/0", "extra/1", "noise"]
    expected = policy.actor_out(policy.trunk(features)).argmax(-1)
    assert torch.equal(policy(obs), expected)
    assert not policy.numpy_actor_ok  # collection runs the torch forward


# ---- images through the CNN ---------------------------------------------------------------------
def test_picture_env_is_learned_by_ppo_through_the_nature_cnn():
    """Reward only for naming the half of the picture that shows the square: chance scores 4 of 8."""
    make = lambda seed: PPO(env_id="user_envs:UserEnvs/Picture-v0", max_env_steps=3000, seed=seed, **BANDIT_PPO)  # noqa: E731
    module = make(0)
    assert isinstance(module.policy.encoder.parts, NatureCNN)
    rollout = Collector("user_envs:UserEnvs/Picture-v0", 8).rollout(module.policy, 16)
    assert rollout.observations.dtype == torch.uint8 and rollout.observations.shape == (16, 8, 40, 40, 3)  # not float
    assert score(module) < 6.0
    scores = train_seeds(make)
    assert sum(s >= LEARNED for s in scores) >= 2, scores


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("env_id", ["user_envs:UserEnvs/Picture-v0", "user_envs:UserEnvs/CueDict-v0"], ids=["image", "Dict"])
def test_image_and_dict_policies_learn_on_the_gpu(env_id):
    module, seen = PPO(env_id=env_id, max_env_steps=3000, seed=0, **BANDIT_PPO), DevicesSeen()
    quiet_trainer(accelerator="gpu", devices=1, callbacks=[seen]).fit(module)
    assert seen.types == {"cuda"}
    assert score(module) >= LEARNED


# ---- Dict, Tuple and Discrete observations: training and export --------------------------------
@pytest.mark.parametrize("env_id", ["user_envs:UserEnvs/CueDict-v0", "user_envs:UserEnvs/Parity-v0"], ids=["Dict", "Discrete"])
def test_structured_observations_train(env_id):
    scores = train_seeds(lambda seed: PPO(env_id=env_id, max_env_steps=2000, seed=seed, **BANDIT_PPO))
    assert sum(s >= LEARNED for s in scores) >= 2, scores


@pytest.mark.parametrize("env_id", ["user_envs:UserEnvs/CueDict-v0", "user_envs:UserEnvs/Parity-v0",
                                    "user_envs:UserEnvs/Picture-v0"], ids=["Dict", "Discrete", "image"])
def test_every_observation_kind_exports_from_a_checkpoint(env_id, tmp_path):
    """TorchScript and ONNX files act like the checkpoint's policy on real observations, fed in the env's dtype."""
    module = PPO(env_id=env_id, max_env_steps=2000, seed=0, **BANDIT_PPO)  # trained: it acts on the cue
    trainer = quiet_trainer()
    trainer.fit(module)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    policy = load_module(tmp_path / "model.ckpt", allow=["user_envs"]).policy  # the user's own env package
    obs = Collector(env_id, 4, seed=7).rollout(policy, 25).observations  # real observations, in the batches' layout
    flat = {k: v.flatten(0, 1) for k, v in obs.items()} if isinstance(obs, dict) else obs.flatten(0, 1)
    with torch.no_grad():
        expected = policy(flat)
    assert len(set(expected.tolist())) == 2  # both actions occur: the comparison can fail
    scripted = torch.jit.load(str(export_torchscript(policy, tmp_path / "policy.pt")))
    assert torch.equal(scripted(flat), expected)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    session = ort.InferenceSession(str(export_onnx(policy, tmp_path / "policy.onnx")), providers=["CPUExecutionProvider"])
    feed = {f"obs/{k}": v.numpy() for k, v in flat.items()} if isinstance(flat, dict) else {"obs": flat.numpy()}
    assert {i.name for i in session.get_inputs()} == set(feed)
    (actions,) = session.run(None, feed)
    assert torch.equal(torch.from_numpy(actions), expected)


# ---- a user's network ---------------------------------------------------------------------------
def test_a_user_trunk_trains_under_the_algorithms_heads():
    network = {"class_path": "user_envs.TinyTrunk", "init_args": {"width": 16}}
    make = lambda seed: Reinforce(env_id="user_envs:UserEnvs/Signal-v0", network=network, hidden_sizes=[],  # noqa: E731
                                  episodes_per_batch=4, num_envs=4, lr=0.01, max_env_steps=3000, seed=seed)
    module = make(0)
    assert isinstance(module.policy.encoder, user_envs.TinyTrunk) and module.policy.encoder.layer.in_features == 2
    assert module.policy.actor_out.in_features == 16  # the heads sit on the trunk's features
    before = module.policy.encoder.layer.weight.detach().clone()
    scores = train_seeds(make)
    assert sum(s >= LEARNED for s in scores) >= 2, scores
    quiet_trainer().fit(module)
    assert not torch.equal(module.policy.encoder.layer.weight, before)  # the user's weights are trained


# ---- wrappers -----------------------------------------------------------------------------------
APPEND = [{"class_path": "user_envs.AppendConstant", "init_args": {"value": 0.25}},
          {"class_path": "user_envs.AppendConstant", "init_args": {"value": 0.5}}]


def test_wrappers_apply_in_order_to_training_and_evaluation_envs():
    module = PPO(env_id="CartPole-v1", wrappers=APPEND, num_envs=4, vectorization="auto")
    assert module.observation_space.shape == (6,)
    rollout = Collector("CartPole-v1", 4, wrappers=APPEND).rollout(module.policy, 10)
    assert torch.equal(rollout.observations[..., 4:], torch.tensor([0.25, 0.5]).expand(10, 4, 2))
    with recorded_env("CartPole-v1", None, APPEND, None) as env:
        assert list(env.reset(seed=0)[0][4:]) == [0.25, 0.5]


def test_episodes_a_wrapper_ends_are_counted_with_the_wrapped_returns():
    """The env's own statistics miss an episode a TimeLimit wrapper cuts; the outer ones count it."""
    limit = [{"class_path": "gymnasium.wrappers.TimeLimit", "init_args": {"max_episode_steps": 5}}]
    batch = Collector("CartPole-v1", 2, wrappers=limit).rollout(PPO().policy, 12)
    assert batch.episode_lengths.tolist() == [5.0] * 4 and batch.episode_returns.tolist() == [5.0] * 4
    reinforce = Collector("CartPole-v1", 1, wrappers=limit).episodes(Reinforce().policy, 3)
    assert reinforce.episode_lengths.tolist() == [5.0] * 3 and reinforce.num_steps == 15


def test_yaml_config_with_a_user_env_wrappers_and_network_trains_from_the_command_line(tmp_path):
    """A user's package named only in YAML (imported by the env id), wrappers and a user trunk;
    evaluation during training plays the wrapped env (it would fail on the wrong observation size)."""
    config = {"model": {"class_path": "pg_lightning.PPO", "init_args": {
        "env_id": "user_envs:UserEnvs/Signal-v0", "wrappers": APPEND,
        "network": {"class_path": "user_envs.TinyTrunk", "init_args": {"width": 16}},
        **BANDIT_PPO, "lr": 0.003, "hidden_sizes": [], "max_env_steps": 4000, "eval_every": 5, "eval_episodes": 5}},
        "trainer": {"max_epochs": -1, "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                                  "init_args": {"save_dir": str(tmp_path / "logs")}},
                    "enable_progress_bar": False}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--config", str(tmp_path / "config.yaml")],
        cwd=tmp_path, env=user_env(tmp_path, PYTHONPATH=str(TESTS)), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = next(tmp_path.glob("logs/**/metrics.csv")).read_text().splitlines()
    header = metrics[0].split(",")
    column = header.index("val/episode_return")
    val = [float(row.split(",")[column]) for row in metrics[1:] if row.split(",")[column]]
    assert len(val) >= 5 and val[-1] >= LEARNED - 0.5, val  # 5 episodes of the deterministic policy
    checkpoint = next(tmp_path.glob("logs/**/checkpoints/last.ckpt"))
    policy = load_module(checkpoint, allow=["user_envs"]).policy  # a trust-checked load names the user's package
    assert policy.encoder.layer.in_features == 4  # Signal's 2 + the two appended constants


# ---- play ---------------------------------------------------------------------------------------
def test_play_prints_the_evaluations_returns_and_writes_a_video(tmp_path):
    module = PPO(env_id="CartPole-v1", num_envs=4, n_steps=16, max_env_steps=3000, seed=3)
    trainer = quiet_trainer()
    trainer.fit(module)
    trainer.save_checkpoint(tmp_path / "agent.ckpt")
    video = tmp_path / "out/agent.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "pg_lightning.play", str(tmp_path / "agent.ckpt"), "--episodes", "3", "--video", str(video)],
        env=user_env(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = evaluate(module.policy, "CartPole-v1", 3, seed=0)  # deterministic, episode k seeded k
    lines = result.stdout.splitlines()
    for k in range(3):
        assert f"episode {k}: return {expected['returns'][k]:g}, length {expected['lengths'][k]}" in lines
    assert video.stat().st_size > 1000
    stochastic = subprocess.run(
        [sys.executable, "-m", "pg_lightning.play", str(tmp_path / "agent.ckpt"), "--episodes", "3", "--stochastic"],
        env=user_env(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert stochastic.returncode == 0 and stochastic.stdout != result.stdout.replace(f"; video {video}", "")
    bad = subprocess.run([sys.executable, "-m", "pg_lightning.play", str(tmp_path / "missing.ckpt")],
                         env=user_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


# ---- pixel spaces that are not one rank-3 image -------------------------------------------------
def test_a_rank_2_uint8_frame_is_a_single_channel_image_through_the_cnn():
    """``AtariPreprocessing`` without frame stacking gives ``Box(0, 255, (84, 84), uint8)``: one
    grayscale channel, scaled to [0, 1] and read by the CNN, not raw 0-255 values into an MLP."""
    frame = gym.spaces.Box(0, 255, (84, 84), np.uint8)
    x = torch.randint(0, 256, (2, 84, 84), dtype=torch.uint8)
    assert torch.equal(preprocess_leaf(frame, x, torch.float32), x[:, None].float() / 255)
    policy = ActorCritic(frame, gym.spaces.Discrete(2), critic="separate")
    assert isinstance(policy.encoder.parts, NatureCNN) and policy.encoder.parts.net[0].in_channels == 1
    assert not policy.numpy_actor_ok
    with torch.no_grad():
        assert policy(x).shape == (2,) and policy.value(x).shape == (2,)
    with pytest.raises(ValueError, match="36×36"):  # as small rank-3 images are
        ActorCritic(gym.spaces.Box(0, 255, (20, 20), np.uint8), gym.spaces.Discrete(2))


@pytest.mark.parametrize("space, where", [
    (gym.spaces.Box(0, 255, (4, 210, 160, 3), np.uint8), ""),
    (gym.spaces.Dict({"frames": gym.spaces.Box(0, 255, (2, 40, 40, 3), np.uint8), "x": gym.spaces.Discrete(2)}), "entry 'frames'"),
])
def test_a_stack_of_image_frames_is_refused_in_one_line_saying_what_to_do(space, where):
    """A ``(4, 210, 160, 3)`` stack would be an MLP of 403,200 raw inputs: refused before training,
    naming the shape and the wrappers that make frames the CNN reads; a user's network may take it."""
    from pg_lightning.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        ActorCritic(space, gym.spaces.Discrete(2))
    message = str(info.value)
    assert "rank 4" in message and "FrameStackObservation" in message and "network:" in message and where in message
    assert "\n" not in message
    small = gym.spaces.Box(0, 255, (2, 4, 4, 3), np.uint8)
    network = {"class_path": "user_envs.TinyTrunk", "init_args": {"width": 8}}
    assert ActorCritic(small, gym.spaces.Discrete(2), network=network).encoder.layer.in_features == 96


def test_dict_keys_with_dots_and_module_dict_names_train_save_and_export(tmp_path):
    """``"cue.id"`` and ``"keys"`` cannot name ``ModuleDict`` entries: the encoder names them
    apart, and the policy trains, checkpoints, reloads and exports."""
    env_id = "user_envs:UserEnvs/DottedCue-v0"
    module = PPO(env_id=env_id, max_env_steps=256, seed=0, **BANDIT_PPO)
    assert sorted(module.policy.encoder.names) == ["%cue%2Eid", "%keys"]
    trainer = quiet_trainer()
    trainer.fit(module)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    policy = load_module(tmp_path / "model.ckpt", allow=["user_envs"]).policy
    obs = Collector(env_id, 4, seed=7).rollout(policy, 8).observations
    flat = {k: v.flatten(0, 1) for k, v in obs.items()}
    assert set(flat) == {"cue.id", "keys"}
    with torch.no_grad():
        expected = policy(flat)
        assert torch.equal(expected, module.policy(flat))
    assert torch.equal(torch.jit.load(str(export_torchscript(policy, tmp_path / "policy.pt")))(flat), expected)
    ort = pytest.importorskip("onnxruntime")
    feed = {f"obs/{k}": v.numpy() for k, v in flat.items()}
    file = export_onnx(policy, tmp_path / "policy.onnx", dynamo=False)  # the faster exporter; both take the names
    (actions,) = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"]).run(None, feed)
    assert torch.equal(torch.from_numpy(actions), expected)
