"""The pixel-game configs and the MinAtar registration: they build, play and resume exactly."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import quiet_trainer

from pg_lightning.collector import Collector
from pg_lightning.networks import NatureCNN
from pg_lightning.registry import model_from_config

pytest.importorskip("minatar")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BREAKOUT = "pg_lightning.games:MinAtar/Breakout-v1"


def test_minatar_games_replay_exactly_from_their_seeds_and_checkpointed_state():
    """MinAtar seeds its games outside gymnasium; the registered env draws them from np_random,
    so a collector's state_dict resumes the very episodes an uninterrupted collector plays."""
    module = model_from_config(str(CONFIGS / "minatar_breakout_ppo.yaml"), num_envs=2)
    policy = module.policy
    assert module.observation_space.dtype == bool and policy.numpy_actor_ok  # flat boards: the numpy actor
    first, second = Collector(BREAKOUT, 2, seed=5), Collector(BREAKOUT, 2, seed=5)
    first.episodes(policy, 2)
    state = first.state_dict()
    expected = first.episodes(policy, 3)
    second.load_state_dict(state)
    resumed = second.episodes(policy, 3)
    assert torch.equal(resumed.observations, expected.observations) and torch.equal(resumed.actions, expected.actions)
    other = Collector(BREAKOUT, 2, seed=6).episodes(policy, 3)
    assert not torch.equal(other.observations[:8], expected.observations[:8])  # another seed plays other games


def test_minatar_renders_without_seaborn():
    import gymnasium as gym

    env = gym.make(BREAKOUT, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8 and len(np.unique(frame.reshape(-1, 3), axis=0)) > 1


def test_breakout_config_builds_the_cnn_on_stacked_uint8_frames_and_trains_an_update():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    module = model_from_config(str(CONFIGS / "breakout_ppo.yaml"), num_envs=2, n_steps=8, minibatch_size=8,
                               max_env_steps=16, anneal_lr=False)
    assert module.observation_space.shape == (4, 84, 84) and module.observation_space.dtype == np.uint8
    assert isinstance(module.policy.encoder.parts, NatureCNN) and len(module.policy.trunk) == 0  # heads on the 512 units
    assert module.policy.actor_out.in_features == 512 and module.policy.critic_encoder is None  # shared, as CleanRL
    before = module.policy.actor_out.weight.detach().clone()
    quiet_trainer().fit(module)
    assert module.env_steps >= 16 and not torch.equal(module.policy.actor_out.weight, before)
    rollout = Collector(module.hparams.env_id, 2, module.hparams.env_kwargs, "sync", wrappers=module.hparams.wrappers).rollout(
        module.policy, 4)
    assert rollout.observations.dtype == torch.uint8 and rollout.observations.shape == (4, 2, 4, 84, 84)
