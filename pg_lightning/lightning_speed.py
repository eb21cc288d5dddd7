"""Lightning-specific speed paths, in one place. Each skips general work Lightning does around every
update (there are many updates, each small) and keeps Lightning's behaviour; what each saved is
listed in benchmarks/README.md."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.profilers import PassThroughProfiler

# set on the module around every hook call, or every update; never parameters, buffers or modules
PLAIN_ATTRIBUTES = frozenset({"_current_fx_name"})


class NoProfiler(PassThroughProfiler):
    """Lightning's default no-op profiler, without building a context manager for every hook call."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._nothing


class LightningSpeedPaths(L.LightningModule):
    """The LightningModule side of the speed paths; ``setup`` / ``teardown`` scope the per-fit ones."""

    cpu_batch_types: tuple[type, ...] = ()  # batches whose tensors are on the CPU already

    def __init__(self) -> None:
        super().__init__()
        self._quiet: warnings.catch_warnings | None = None  # a warnings filter scoped to one fit
        self._limit_val_batches: int | float | None = None  # the Trainer's, while a fit without evaluation runs

    def __setattr__(self, name: str, value: Any) -> None:
        # nn.Module.__setattr__ looks a name up among parameters, buffers and modules before it
        # ends in object.__setattr__, which these plain values go to directly
        if name in PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        seeds = isinstance(batch, list) and all(b is None or isinstance(b, self.cpu_batch_types) for b in batch)
        if device.type == "cpu" and (seeds or isinstance(batch, self.cpu_batch_types)):
            return batch  # nothing to move (one batch, or a many-seeds run's list of them): Lightning would walk them to find out
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def evaluates_during_fit(self) -> bool:
        """Whether a fit runs evaluation at all (a module without evaluation skips the validation loop)."""
        return True

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        if type(trainer.profiler) is PassThroughProfiler:  # a user's profiler is kept
            trainer.profiler = NoProfiler()  # the default does nothing, at a cost per hook call
        self._restore_validation()  # left by a fit that raised (teardown did not run)
        if stage == "fit":  # restored in teardown
            if not self.evaluates_during_fit():
                # no evaluation in this fit: no validation loop either, which runs its hooks every update
                self._limit_val_batches, trainer.limit_val_batches = trainer.limit_val_batches, 0
            self._quiet = warnings.catch_warnings()
            self._quiet.__enter__()
            # Lightning's own use of a torch API that torch deprecated: nothing a user can change
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            # one batch per epoch is the design (train_dataloader), not a logging interval too long
            warnings.filterwarnings("ignore", message="The number of training batches")

    def _restore_validation(self) -> None:
        if self._limit_val_batches is not None:
            self.trainer.limit_val_batches, self._limit_val_batches = self._limit_val_batches, None

    def teardown(self, stage: str) -> None:
        self._restore_validation()
        if stage == "fit" and self._quiet is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None
