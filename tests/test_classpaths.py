"""Classes named in configs: a class path or ``{class_path, init_args}`` split without importing,
imported and checked against the class's signature, and strings refused where code is expected."""

import collections

import pytest
import torch

from pg_lightning.classpaths import class_spec, import_class, split_spec
from pg_lightning.errors import ConfigError


def test_import_class_follows_the_dotted_path():
    assert import_class("collections.OrderedDict") is collections.OrderedDict
    assert import_class("torch.nn.Linear") is torch.nn.Linear


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("a.b.C", ("a.b.C", {})),
        ({"class_path": "a.B"}, ("a.B", {})),
        ({"class_path": "a.B", "init_args": None}, ("a.B", {})),
        ({"class_path": "a.B", "init_args": {"x": 1}}, ("a.B", {"x": 1})),
    ],
)
def test_split_spec_gives_the_path_and_arguments_without_importing(spec, expected):
    assert split_spec(spec, "what") == expected  # module 'a' does not exist: nothing was imported


@pytest.mark.parametrize("spec", [3, None, ["a.B"], {"init_args": {}}, {"class_path": 5},
                                  {"class_path": "a.B", "init_args": {}, "extra": 1}])
def test_split_spec_refuses_anything_else_naming_the_entry(spec):
    with pytest.raises(ConfigError, match=r"^what: expected a class path or \{class_path: ..., init_args: \{...\}\}, got "):
        split_spec(spec, "what")


def test_class_spec_checks_the_arguments_against_the_signature():
    cls, kwargs = class_spec({"class_path": "torch.nn.Linear", "init_args": {"in_features": 3, "out_features": 2}}, "net")
    assert cls is torch.nn.Linear and kwargs == {"in_features": 3, "out_features": 2}
    assert class_spec("torch.nn.Linear", "net") == (torch.nn.Linear, {})  # a partial binding is fine
    with pytest.raises(ConfigError, match=r"^net: bad init_args \{'width': 3\} for torch.nn.Linear: "):
        class_spec({"class_path": "torch.nn.Linear", "init_args": {"width": 3}}, "net")


@pytest.mark.parametrize("path", ["no_such_module_here.Net", "collections.NoSuchClass", "NoDots"])
def test_class_spec_names_what_cannot_be_imported(path):
    with pytest.raises(ConfigError, match=f"^net: cannot import '{path}': "):
        class_spec(path, "net")


def test_a_string_for_a_callable_parameter_is_refused():
    spec = {"class_path": "gymnasium.wrappers.TransformReward", "init_args": {"func": "os.system"}}
    with pytest.raises(ConfigError, match="TransformReward's 'func' takes a callable, got the string 'os.system'"):
        class_spec(spec, "wrappers")
    # a string for a parameter that is not a callable is data
    assert class_spec({"class_path": "gymnasium.wrappers.TimeLimit", "init_args": {"max_episode_steps": "5"}}, "w")[1] == {
        "max_episode_steps": "5"}


def test_a_class_without_a_signature_is_returned_unchecked():
    assert class_spec({"class_path": "builtins.dict", "init_args": {"anything": 1}}, "x") == (dict, {"anything": 1})
