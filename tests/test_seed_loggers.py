"""Per-seed loggers of a many-seeds run: each seed's own CSV file and W&B run, read back from disk
(offline ``.wandb`` files), and ``seed<s>/`` keys in any other logger."""

import csv
import time
from pathlib import Path

import lightning as L
import pytest
import yaml
from helpers import wandb_records, wandb_run
from lightning.pytorch.loggers import CSVLogger, Logger

from pg_lightning import plot
from pg_lightning.loggers import WandbLogger
from pg_lightning.seed_loggers import SeedLoggers, with_seed

# hyperparameters as the CLI logs them for `--model.seed 3`
CONFIG = {"seed_everything": 3, "model": {"class_path": "PPO", "init_args": {"seed": 3, "lr": 0.01}}, "trainer": {"max_epochs": -1}}
# what each seed logs at steps 0 and 1: different values and env steps per seed
LOGGED = {
    3: [{"train/env_steps": 100.0, "train/return_last100": 10.0},
        {"train/env_steps": 200.0, "train/return_last100": 11.0, "val/env_steps": 200.0, "val/episode_return": 12.0}],
    4: [{"train/env_steps": 100.0, "train/return_last100": 20.0},
        {"train/env_steps": 200.0, "train/return_last100": 21.0, "val/env_steps": 200.0, "val/episode_return": 22.0}],
}


def written_run(run_file: Path, timeout: float = 30.0) -> dict:
    """``wandb_run`` of a finished run once W&B's service has written all of it (its exit record
    last): ``finish`` can return before the file is even begun."""
    deadline = time.monotonic() + timeout
    while not has_exit(run_file):
        assert time.monotonic() < deadline, f"{run_file} has no exit record"
        time.sleep(0.1)
    return wandb_run(run_file)


def has_exit(run_file: Path) -> bool:
    from google.protobuf.message import DecodeError

    if run_file.read_bytes()[:4] != b":W&B":  # not begun
        return False
    try:
        return any(r.WhichOneof("record_type") == "exit" for r in wandb_records(run_file))
    except DecodeError:  # a record half written
        return False


def trainer_with(logger, tmp_path) -> L.Trainer:
    return L.Trainer(logger=logger, default_root_dir=tmp_path, enable_progress_bar=False, enable_checkpointing=False,
                     enable_model_summary=False)


def log_every_seed(seed_loggers: SeedLoggers) -> None:
    for step in (0, 1):
        for index, seed in enumerate(seed_loggers.seeds):
            seed_loggers.log_metrics(index, LOGGED[seed][step], step=step)


class Recorder(Logger):
    """A logger of a type SeedLoggers has no sibling for: it keeps what it is given."""

    def __init__(self):
        super().__init__()
        self.logged: list[tuple[dict, int]] = []

    name, version = "recorder", 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.logged.append((dict(metrics), step))


def test_each_seed_has_its_own_csv_file_and_hyperparameters_and_other_loggers_get_prefixed_keys(tmp_path):
    recorder = Recorder()
    trainer = trainer_with([CSVLogger(tmp_path, name="run"), recorder], tmp_path)
    trainer.loggers[0].log_hyperparams(CONFIG)
    seed_loggers = SeedLoggers(trainer, [3, 4])
    log_every_seed(seed_loggers)
    seed_loggers.finalize("success")

    log_dir = Path(trainer.loggers[0].log_dir)
    assert log_dir == tmp_path / "run" / "version_0"
    for seed in (3, 4):
        with open(log_dir / f"seed{seed}" / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["step"]) for r in rows] == [0, 1]
        for row, logged in zip(rows, LOGGED[seed]):
            assert {k: float(row[k]) for k in logged} == logged
        assert rows[0]["val/episode_return"] == ""  # logged at step 1 only
        hparams = yaml.safe_load((log_dir / f"seed{seed}" / "hparams.yaml").read_text())
        assert hparams == with_seed(CONFIG, seed)
        assert hparams["seed_everything"] == hparams["model"]["init_args"]["seed"] == seed
        assert hparams["model"]["init_args"]["lr"] == 0.01
    assert not (log_dir / "metrics.csv").exists()  # the Trainer's own file has nothing of the seeds
    assert plot.find_metrics(log_dir) == [log_dir / "seed3" / "metrics.csv", log_dir / "seed4" / "metrics.csv"]

    expected = [({f"seed{seed}/{k}": v for k, v in LOGGED[seed][step].items()}, step) for step in (0, 1) for seed in (3, 4)]
    assert recorder.logged == expected


def test_other_ranks_log_nothing(tmp_path):
    class Rank1:
        is_global_zero = False
        loggers = [CSVLogger(tmp_path, name="run")]

    seed_loggers = SeedLoggers(Rank1(), [3, 4])
    log_every_seed(seed_loggers)
    seed_loggers.finalize("success")
    assert not list(tmp_path.rglob("*.csv"))


def test_with_seed_sets_only_seed_keys_and_copies():
    params = {"seed": 0, "seed_everything": True, "model": {"init_args": {"seed": 0, "hidden": [64]}}}
    assert with_seed(params, 7) == {"seed": 7, "seed_everything": True, "model": {"init_args": {"seed": 7, "hidden": [64]}}}
    assert params["model"]["init_args"]["seed"] == 0  # the original is left alone


@pytest.mark.parametrize("logger_name, name, base", [("cfg", None, "cfg"), (None, "cartpole_ppo", "cartpole_ppo")])
def test_each_seed_is_its_own_offline_wandb_run_with_the_axes_of_a_one_seed_run(tmp_path, logger_name, name, base):
    import wandb

    logger = WandbLogger(project="seedproj", save_dir=str(tmp_path), name=logger_name)
    trainer = trainer_with(logger, tmp_path)
    try:
        logger.log_hyperparams(CONFIG)
        seed_loggers = SeedLoggers(trainer, [3, 4], name=name)
        assert wandb.run is logger.experiment  # the global run is the Trainer's, untouched by the seeds'
        log_every_seed(seed_loggers)
        for step in (0, 1):  # the Trainer's run as a one-seed run: the axes to compare with
            logger.log_metrics(LOGGED[3][step], step=step)
        seed_loggers.finalize("success")
        trainer_id = logger.experiment.id
    finally:
        logger.experiment.finish()

    files = {f.parent.name.rpartition("-")[2] if "seed" in f.parent.name else "trainer": f
             for f in (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")}
    assert set(files) == {"trainer", "seed3", "seed4"}
    one_seed = written_run(files["trainer"])
    for seed in (3, 4):
        w = written_run(files[f"seed{seed}"])
        assert w["run"].run_id == f"{trainer_id}-seed{seed}"
        assert (w["run"].display_name, w["run"].run_group, w["run"].project) == (f"{base}-seed{seed}", base, "seedproj")
        assert {k: w["config"][k] for k in CONFIG} == with_seed(CONFIG, seed)
        rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in w["history"]]
        assert rows == [{**LOGGED[seed][step], "trainer/global_step": step} for step in (0, 1)]
        assert w["metrics"] == one_seed["metrics"] and w["globs"] == one_seed["globs"]
        assert w["metrics"]["val/episode_return"] == "val/env_steps"
        assert w["metrics"]["train/return_last100"] == "train/env_steps"
        [exit_record] = [r.exit for r in wandb_records(files[f"seed{seed}"]) if r.WhichOneof("record_type") == "exit"]
        assert exit_record.exit_code == 0
