"""The trust boundary's checks, case by case: which names are allowed, what is plain data, which
env ids and wrappers pass untrusted, and the network-size bound (hand-computed parameter counts).
Whole hostile checkpoints through play, export and validate: test_checkpoints.py."""

import pytest
import torch

from pg_lightning import trust
from pg_lightning.errors import ConfigError


@pytest.mark.parametrize(
    "name, allow, expected",
    [
        ("user_envs", ["user_envs"], True),  # the module itself
        ("user_envs.TinyTrunk", ["user_envs"], True),  # inside it
        ("user_envs.nets.Deep", ["user_envs.nets"], True),
        ("user_envs_evil.Net", ["user_envs"], False),  # a longer name is not inside the module
        ("user_envs", ["user_envs.TinyTrunk"], False),  # a class allowed does not allow its module
        ("user_envs.TinyTrunk", [], False),
    ],
)
def test_is_allowed_takes_a_listed_name_and_what_is_inside_it(name, allow, expected):
    assert trust.is_allowed(name, allow) is expected


@pytest.mark.parametrize("value", [None, True, 3, 2.5, "text", [1, "a"], (1, 2), {"a": [1, {"b": None}]}, [], {}])
def test_is_plain_accepts_numbers_strings_and_their_lists_and_dicts(value):
    assert trust.is_plain(value)


@pytest.mark.parametrize("value", [torch.zeros(1), {1: 2}, [object()], {"f": print}, {1, 2}, b"bytes", [[torch.ones(2)]]],
                         ids=["tensor", "int key", "object", "function", "set", "bytes", "nested tensor"])
def test_is_plain_refuses_anything_else_at_any_depth(value):
    assert not trust.is_plain(value)


def test_a_registered_env_id_passes_and_an_unknown_one_is_named():
    trust.check_env_id("CartPole-v1", "src", ())
    with pytest.raises(ConfigError, match=r"^src: unknown env_id 'NoSuchEnv-v0' \(not registered with gymnasium\)$"):
        trust.check_env_id("NoSuchEnv-v0", "src", ())


@pytest.mark.parametrize("env_id", [None, "", 3, ["CartPole-v1"]])
def test_an_env_id_must_be_a_non_empty_string(env_id):
    with pytest.raises(ConfigError, match="env_id must be a gymnasium id"):
        trust.check_env_id(env_id, "src", ())


def test_the_import_form_of_an_env_id_passes_only_for_shipped_or_allowed_modules():
    trust.check_env_id("pg_lightning.games:Anything-v0", "src", ())  # one of ENV_MODULES; nothing imported here
    trust.check_env_id("ale_py:ALE/Pong-v5", "src", ())
    with pytest.raises(ConfigError) as refused:
        trust.check_env_id("evil.envs:Maze-v0", "src", ())
    assert "env_id 'evil.envs:Maze-v0' imports module 'evil.envs'" in str(refused.value)
    assert "--allow evil.envs" in str(refused.value) and "--model.env_id" in str(refused.value)
    trust.check_env_id("evil.envs:Maze-v0", "src", ["evil"])  # allowed by its package
    with pytest.raises(ConfigError):
        trust.check_env_id("evil.envs:Maze-v0", "src", ["evil.envs.Maze"])


@pytest.mark.parametrize(
    "spec",
    ["gymnasium.wrappers.ClipReward",
     {"class_path": "gymnasium.wrappers.TimeLimit", "init_args": {"max_episode_steps": 10}},
     "gymnasium.wrappers.common.TimeLimit"],  # a submodule of gymnasium.wrappers
)
def test_gymnasiums_data_only_wrappers_pass(spec):
    trust.check_wrapper(spec, "src", ())


@pytest.mark.parametrize(
    "spec, allow, message",
    [
        ("gymnasium.wrappers.RecordVideo", (), "wrappers name 'gymnasium.wrappers.RecordVideo'"),  # writes files
        ("gymnasium.wrappers.TransformReward", (), "wrappers name 'gymnasium.wrappers.TransformReward'"),  # takes code
        ("evil.wrappers.ClipReward", (), "wrappers name 'evil.wrappers.ClipReward'"),  # a safe name elsewhere
        ({"class_path": "gymnasium.wrappers.ClipReward", "init_args": {"min_reward": torch.zeros(1)}}, (),
         "ClipReward's init_args must be plain data"),
        ({"class_path": "my.Wrapper", "init_args": {"f": print}}, ["my"], "my.Wrapper's init_args must be plain data"),
        (3, (), "expected a class path"),
    ],
)
def test_other_wrappers_are_refused_naming_them(spec, allow, message):
    with pytest.raises(ConfigError, match="^src: ") as refused:
        trust.check_wrapper(spec, "src", allow)
    assert message in str(refused.value)


def test_an_allowed_wrapper_class_passes():
    trust.check_wrapper({"class_path": "my.wrappers.Shift", "init_args": {"by": 1.5}}, "src", ["my.wrappers.Shift"])


def test_check_names_skips_what_the_user_restates_but_not_the_rest():
    hparams = {"env_id": "evil:Maze-v0", "network": "evil.Net", "hidden_sizes": [8], "num_envs": 1}
    with pytest.raises(ConfigError, match="env_id 'evil:Maze-v0'"):
        trust.check_names(hparams, "src")
    with pytest.raises(ConfigError, match="network names the class 'evil.Net'"):
        trust.check_names(hparams, "src", restated={"env_id"})
    trust.check_names(hparams, "src", restated={"env_id", "network"})
    trust.check_names(hparams, "src", allow=["evil"])


@pytest.mark.parametrize(
    "sizes, expected",
    [([], 0), ([5], 0), ([3, 2, 1], 8 + 3), ([4, 8, 2], 5 * 8 + 9 * 2), ([1, 11585, 11585, 1], 134_258_566)],
)
def test_layer_parameters_counts_weights_and_biases(sizes, expected):
    assert trust.layer_parameters(sizes) == expected


def test_a_separate_critic_or_value_baseline_counts_the_network_twice():
    # 2·11585 + 11586·11585 + 11586 = 134,258,566 ≤ 2^28 = 268,435,456 < twice that = 268,517,132
    hparams = {"hidden_sizes": [11585, 11585], "num_envs": 1, "critic": "none"}
    trust.check_sizes(hparams, "src")
    for twice in ({"critic": "separate"}, {"baseline": "value"}):
        with pytest.raises(ConfigError, match="make a network of 268,517,132 parameters, more than 268,435,456"):
            trust.check_sizes({**hparams, **twice}, "src")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_sizes": [65537]}, "hidden_sizes must be integers in [1, 65536], got [65537]"),
        ({"hidden_sizes": [0]}, "hidden_sizes must be integers in [1, 65536]"),
        ({"hidden_sizes": [8.0]}, "hidden_sizes must be integers"),
        ({"hidden_sizes": "64"}, "hidden_sizes must be integers"),
        ({"num_envs": 0}, "num_envs must be an integer in [1, 16384], got 0"),
        ({"num_envs": 16385}, "num_envs must be an integer in [1, 16384], got 16385"),
    ],
)
def test_widths_and_env_counts_out_of_bounds_are_refused(changes, message):
    hparams = {"hidden_sizes": [65536], "num_envs": 16384, **changes}
    trust.check_sizes({"hidden_sizes": [65536], "num_envs": 16384}, "src")  # the bounds themselves pass
    with pytest.raises(ConfigError) as refused:
        trust.check_sizes(hparams, "src")
    assert message in str(refused.value)


def test_the_size_bound_counts_the_input_and_output_layers():
    hparams = {"hidden_sizes": [4096, 4096], "num_envs": 1, "critic": "none"}
    trust.check_sizes(hparams, "x")  # hidden layers alone: ~16.8M parameters
    with pytest.raises(ConfigError, match="more than 268,435,456"):
        trust.check_sizes(hparams, "x", inputs=100_000)  # a 100k-wide observation adds 409.6M
    assert trust.layer_parameters([3, 2, 1]) == (3 + 1) * 2 + (2 + 1) * 1
