"""The command line before LightningCLI reads it: option values in every spelling, the model
arguments a command line (and its config files) gives, and the model chosen first."""

import lightning as L
import pytest

from pg_lightning import PPO
from pg_lightning.cli_args import given_model_arguments, is_local_file, option_values, with_model

REINFORCE = ["--model", "pg_lightning.modules.reinforce.Reinforce"]


def test_option_values_reads_every_spelling_in_order():
    args = ["--config", "a.yaml", "--model.lr", "1", "--config=b.yaml", "-c", "c.yaml", "-c=d.yaml"]
    assert option_values(args, "--config", "-c") == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    assert option_values(args, "--config") == ["a.yaml", "b.yaml"]
    assert option_values(args, "-c") == ["c.yaml", "d.yaml"]


@pytest.mark.parametrize("args", [["--config"], ["--configs", "x"], ["--config_file=x"], ["-cx"], ["--model.config", "x"]])
def test_option_values_ignores_other_options_and_a_flag_without_a_value(args):
    assert option_values(args, "--config", "-c") == []


def test_option_values_takes_a_value_that_looks_like_an_option():
    assert option_values(["--ckpt_path", "--weird"], "--ckpt_path") == ["--weird"]


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("flag", ["--config", "--config=", "-c", "-c="])
def test_given_model_arguments_reads_the_config_files_init_args(tmp_path, flag):
    config = write(tmp_path / "run.yaml", "model:\n  class_path: pg_lightning.PPO\n  init_args:\n    seed: 3\n    n_steps: 8\n")
    config_args = [flag + config] if flag.endswith("=") else [flag, config]
    args = ["--model.lr", "0.1", "--model.init_args.gamma=0.9", *config_args, "--trainer.max_epochs", "2"]
    assert given_model_arguments(args) == {"lr", "gamma", "seed", "n_steps"}


def test_given_model_arguments_without_init_args_in_the_configs(tmp_path):
    empty = write(tmp_path / "empty.yaml", "")
    class_only = write(tmp_path / "class.yaml", "model: pg_lightning.PPO\n")
    trainer_only = write(tmp_path / "trainer.yaml", "trainer: {max_epochs: 3}\n")
    args = ["--model", "pg_lightning.PPO", "-c", empty, "--config", class_only, "--config", trainer_only, "--model.seed=1"]
    assert given_model_arguments(args) == {"seed"}  # "--model X" chooses the class, it sets no argument
    assert given_model_arguments([]) == set()


@pytest.mark.parametrize("path, expected", [(None, False), ("last", False), ("hpc", False), ("registry", False),
                                            ("s3://bucket/run.ckpt", False), ("runs/last.ckpt", True), ("x.ckpt", True)])
def test_is_local_file(path, expected):
    assert is_local_file(path) is expected


@pytest.mark.parametrize(
    "args, expected",
    [
        (["fit", "--model.lr", "0.1", "--model", "pg_lightning.PPO", "--trainer.max_epochs", "2"],
         ["fit", "--model", "pg_lightning.PPO", "--model.lr", "0.1", "--trainer.max_epochs", "2"]),
        (["fit", "--model.lr", "0.1", "--model=pg_lightning.A2C"], ["fit", "--model=pg_lightning.A2C", "--model.lr", "0.1"]),
        (["fit", "--model", "pg_lightning.A2C", "--model.lr", "1", "--model", "pg_lightning.PPO"],  # the last choice wins
         ["fit", "--model", "pg_lightning.PPO", "--model.lr", "1"]),
        (["fit", "--model.lr", "0.1"], ["fit", *REINFORCE, "--model.lr", "0.1"]),  # the default
        (["fit"], ["fit", *REINFORCE]),
        (["fit", "--model"], ["fit", "--model"]),  # no value: LightningCLI will say so
    ],
)
def test_with_model_puts_the_chosen_model_first(args, expected):
    assert with_model(args) == expected


@pytest.mark.parametrize("config", [["--config", "x.yaml"], ["-c=x.yaml"]])
def test_with_model_leaves_a_command_with_a_config_alone(config):
    args = ["fit", "--model.lr", "0.1", *config, "--model", "pg_lightning.PPO"]
    assert with_model(args) == args


@pytest.fixture(scope="module")
def ppo_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "ppo.ckpt"
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(PPO(seed=0, n_steps=8))
    trainer.save_checkpoint(path)
    return str(path)


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_build_the_checkpoints_algorithm(ppo_checkpoint, subcommand):
    assert with_model([subcommand, "--ckpt_path", ppo_checkpoint]) == [
        subcommand, "--model", "pg_lightning.modules.ppo.PPO", "--ckpt_path", ppo_checkpoint]


def test_fit_from_a_checkpoint_and_validate_with_a_model_keep_the_usual_choice(ppo_checkpoint):
    assert with_model(["fit", "--ckpt_path", ppo_checkpoint]) == ["fit", *REINFORCE, "--ckpt_path", ppo_checkpoint]
    chosen = ["validate", "--model", "pg_lightning.A2C", "--ckpt_path", ppo_checkpoint]
    assert with_model(chosen) == chosen  # check_checkpoint refuses the mismatch later, in one line
    assert with_model(["validate", "--ckpt_path", "last"]) == ["validate", *REINFORCE, "--ckpt_path", "last"]
