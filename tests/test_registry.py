"""The algorithms by name: their class paths, which paths name one, the error for an unknown name,
and a model from a YAML config. Modules rebuilt from checkpoints: test_export.py, test_checkpoints.py."""

from pathlib import Path

import pytest
import yaml

from pg_lightning import A2C, PPO, Reinforce, registry
from pg_lightning.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_class_paths_point_at_each_algorithms_module():
    assert registry.class_path("Reinforce") == "pg_lightning.modules.reinforce.Reinforce"
    assert registry.class_path("PPO") == "pg_lightning.modules.ppo.PPO"
    assert registry.class_path(registry.DEFAULT) == "pg_lightning.modules.reinforce.Reinforce"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("pg_lightning.modules.ppo.PPO", True),
        ("pg_lightning.modules.PPO", True),  # the package re-exports
        ("pg_lightning.PPO", True),
        ("pg_lightning.modules.a2c.A2C", True),
        ("pg_lightning.modules.a2c.PPO", False),  # not where PPO lives
        ("hostile_code.PPO", False),
        ("PPO", False),
        ("pg_lightning.Collector", False),
        ("pg_lightning.modules.base.PolicyGradient", False),
        (None, False),
    ],
)
def test_is_algorithm_path(path, expected):
    assert registry.is_algorithm_path(path) is expected


def test_algorithm_gives_the_class_or_names_the_known_ones():
    assert registry.algorithm("Reinforce") is Reinforce
    assert registry.algorithm("A2C") is A2C and registry.algorithm("PPO") is PPO
    with pytest.raises(ConfigError) as unknown:
        registry.algorithm("DQN", "checkpoint 'x.ckpt'")
    assert str(unknown.value) == "checkpoint 'x.ckpt': unknown pg_lightning algorithm 'DQN'; known: Reinforce, A2C, PPO"
    with pytest.raises(ConfigError) as unnamed:
        registry.algorithm(None)
    assert str(unnamed.value) == "unknown pg_lightning algorithm None; known: Reinforce, A2C, PPO"


def test_model_from_config_applies_the_overrides_over_the_configs_arguments():
    path = ROOT / "configs/cartpole_ppo.yaml"
    config = yaml.safe_load(path.read_text())["model"]["init_args"]
    module = registry.model_from_config(str(path), seed=7, num_envs=2)
    assert isinstance(module, PPO)
    assert module.hparams.seed == 7 and module.hparams.num_envs == 2 != config["num_envs"]
    assert (module.hparams.n_steps, module.hparams.lr) == (config["n_steps"], config["lr"]) != (PPO().hparams.n_steps, PPO().hparams.lr)


def test_model_from_config_without_a_class_path_says_what_it_needs(tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  init_args: {seed: 1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: needs model.class_path \(and model.init_args\)"):
        registry.model_from_config(str(tmp_path / "bad.yaml"))
