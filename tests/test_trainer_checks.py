"""Trainer settings an RL module cannot honour, refused in one line; those it can, passed. On
stand-in Trainers, flag by flag (real Trainers: test_path_own_trainer.py)."""

from types import SimpleNamespace

import pytest
from lightning.fabric.utilities.data import AttributeDict

from pg_lightning.errors import ConfigError
from pg_lightning.trainer_checks import check_trainer, validation_cadence_set

DEFAULTS = dict(world_size=1, precision="32-true", accumulate_grad_batches=1, gradient_clip_val=None, val_check_interval=1.0,
                check_val_every_n_epoch=1, limit_train_batches=1.0)


def stand_ins(automatic=True, eval_every=None, **flags):
    trainer = SimpleNamespace(**{**DEFAULTS, **flags})
    module = SimpleNamespace(automatic_optimization=automatic, hparams=AttributeDict(eval_every=eval_every))  # as a module's hparams
    return trainer, module


@pytest.mark.parametrize(
    "flags, expected",
    [({}, False), (dict(check_val_every_n_epoch=2), True), (dict(val_check_interval=5, check_val_every_n_epoch=None), True),
     (dict(val_check_interval=0.5), True)],
)
def test_validation_cadence_set_is_anything_but_the_defaults(flags, expected):
    assert validation_cadence_set(stand_ins(**flags)[0]) is expected


@pytest.mark.parametrize(
    "settings",
    [{}, dict(precision="16-mixed"), dict(precision="bf16-mixed"), dict(precision="64-true"),
     dict(gradient_clip_val=0.5), dict(val_check_interval=1), dict(val_check_interval=3, check_val_every_n_epoch=None),
     dict(limit_train_batches=0.0), dict(limit_train_batches=1), dict(limit_train_batches=5),
     dict(check_val_every_n_epoch=4), dict(eval_every=2)],
    ids=str,
)
def test_what_an_rl_module_can_honour_passes(settings):
    check_trainer(*stand_ins(**settings))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(precision="16-true"), "precision='16-true' keeps weights, statistics and returns in 16 bits"),
        (dict(precision="bf16-true"), "precision='bf16-true'"),
        (dict(accumulate_grad_batches=2), "accumulate_grad_batches=2 is not supported"),
        (dict(automatic=False, gradient_clip_val=0.5), "gradient_clip_val=0.5 needs automatic optimisation"),
        (dict(val_check_interval=0.25), "val_check_interval=0.25 splits an epoch"),
        (dict(val_check_interval=3), "val_check_interval=3 counts batches within an epoch"),
        (dict(limit_train_batches=0.5), "limit_train_batches=0.5: an epoch is one batch"),
        (dict(eval_every=2, check_val_every_n_epoch=3), "eval_every=2 and the Trainer's check_val_every_n_epoch"),
        (dict(eval_every=2, val_check_interval=4, check_val_every_n_epoch=None), "eval_every=2 and the Trainer's"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_what_it_cannot_honour_is_refused_naming_the_flag(settings, message):
    with pytest.raises(ConfigError) as refused:
        check_trainer(*stand_ins(**settings))
    assert message in str(refused.value)
