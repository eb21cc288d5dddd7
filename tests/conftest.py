import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


@pytest.fixture
def quiet_trainer_kwargs(tmp_path):
    """Trainer settings for short test runs: CSV logs in tmp_path, no bar, no checkpoints."""
    from lightning.pytorch.loggers import CSVLogger

    return dict(
        max_epochs=-1,
        logger=CSVLogger(tmp_path, name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
