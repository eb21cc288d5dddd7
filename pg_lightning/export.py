"""Export a trained policy for deployment: TorchScript or ONNX, observations in, actions out.

``python -m pg_lightning.export CKPT --format torchscript|onnx --output PATH``

The exported graph maps a batch of observations ``[B, *obs_shape]`` in the env's dtype (float32,
uint8 images, int64 Discrete; a dict of them for Dict / Tuple spaces) to the deterministic
action of :meth:`ActorCritic.forward` (for discrete spaces the argmax as the space's value, its
``start`` included; the Gaussian mean for Box, not clipped to the action bounds), with observation normalisation included and its running
statistics frozen at their checkpointed values. The critic is not exported.

Checkpoints are read by ``pg_lightning.registry.load_module``: with ``torch.load(weights_only=True)``
(tensors, plain containers and numbers only, so an untrusted file cannot run code), and checked
before the env and network they describe are built. A checkpoint that holds other objects (e.g. a
custom callback's state) is refused with the offending type named; ``--trust-checkpoint`` unpickles
it fully, which runs whatever code the file asks for: only for files you trust.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pg_lightning import observations
from pg_lightning.errors import ConfigError, MissingExtra
from pg_lightning.policies import ActorCritic
from pg_lightning.registry import add_checkpoint_arguments, load_module

FORMATS = ("torchscript", "onnx")


class DeployedPolicy(nn.Module):
    """``obs [B, *obs_shape] -> actions [B, ...]``: a frozen copy of a policy's deterministic actor."""

    def __init__(self, policy: ActorCritic):
        super().__init__()
        self.policy = copy.deepcopy(policy).cpu().eval()
        for p in self.policy.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, obs: Tensor) -> Tensor:
        return self.policy(obs)


# ---- export -------------------------------------------------------------------------------------
def _example(policy: ActorCritic, example_obs: Any = None) -> Tensor | dict[str, Tensor]:
    """A CPU batch of at least two observations (a batch of one would be specialised): random
    observations of the policy's space, or ``example_obs`` (one observation or a batch) checked against it."""
    space = policy.observation_space
    if example_obs is None:
        return observations.apply(torch.as_tensor, observations.sample(space, 2))
    spaces = observations.leaf_spaces(space)
    obs = observations.apply(lambda a: torch.as_tensor(a).detach().cpu(), observations.flatten(example_obs))
    pairs = [(k, s, obs.get(k)) for k, s in spaces.items()] if isinstance(spaces, dict) else [("", spaces, obs)]
    for key, leaf, got in pairs:
        shape = tuple(leaf.shape)
        if got is None or got.dim() - len(shape) not in (0, 1) or tuple(got.shape[got.dim() - len(shape):]) != shape:
            raise ConfigError(f"example_obs{f'[{key!r}]' if key else ''} must be one observation or a batch "
                              f"[B, *obs_shape] of shape {shape}, got {None if got is None else tuple(got.shape)}")
    unbatched = pairs[0][2].dim() == len(pairs[0][1].shape)
    batch = observations.apply(lambda t: t.unsqueeze(0), obs) if unbatched else obs
    return observations.apply(lambda t: t.expand(max(len(t), 2), *t.shape[1:]).clone(), batch)


def export_torchscript(policy: ActorCritic, path: str | Path, example_obs: Tensor | None = None) -> Path:
    """Trace ``policy``'s deterministic actor (with frozen normalisation) to a TorchScript file.

    Load it with ``torch.jit.load(path)``; it takes float32 ``[B, *obs_shape]`` for any ``B``.
    ``example_obs`` (needed only for multi-dimensional observations without normalisation) fixes
    the observation shape. Returns the written path.
    """
    path = Path(path)
    deployed = DeployedPolicy(policy)
    example = _example(policy, example_obs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # recent torch deprecates torch.jit
        traced = torch.jit.trace(deployed, example)
        frozen = torch.jit.freeze(traced)  # parameters and statistics become constants; the critic is dropped
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(frozen, str(path))
    return path


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a logger's warnings (the exporter lists every torchvision op it skips)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingExtra("ONNX export needs the onnx package: pip install 'pg_lightning[onnx]'") from None
    return onnx


def _has_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return "dynamo" in inspect.signature(torch.onnx.export).parameters


def export_onnx(
    policy: ActorCritic,
    path: str | Path,
    example_obs: Tensor | None = None,
    *,
    dynamo: bool | None = None,
) -> Path:
    """Export ``policy``'s deterministic actor (with frozen normalisation) to an ONNX file.

    One input ``obs`` (``[batch, *obs_shape]`` in the env's dtype, batch dynamic), or one input
    ``obs/<key>`` per entry of Dict / Tuple observations, and one output ``action`` (int64 for
    discrete spaces, float32 for Box). ``dynamo``: torch's ``torch.export``-based
    exporter (needs ``onnxscript``) or the older TorchScript-based one; ``None`` uses the former
    when ``onnxscript`` is installed. Needs ``onnx`` (``pip install 'pg_lightning[onnx]'``);
    the written file is checked with ``onnx.checker``. Returns the written path.
    """
    onnx = _require_onnx()
    if dynamo is None:
        dynamo = _has_onnxscript()
    elif dynamo and not _has_onnxscript():
        raise MissingExtra(
            "dynamo ONNX export needs onnxscript (and torch >= 2.5): pip install 'pg_lightning[onnx]'"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deployed = DeployedPolicy(policy)
    example = _example(policy, example_obs)
    keys = list(example) if isinstance(example, dict) else None
    inputs = [f"obs/{k}" for k in keys] if keys is not None else ["obs"]
    names: dict[str, Any] = dict(input_names=inputs, output_names=["action"])
    args = (example, {}) if keys is not None else (example,)  # a trailing dict would be read as keyword arguments
    with warnings.catch_warnings(), torch.no_grad(), _quiet_logger("torch.onnx"):
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        if dynamo:
            batch = torch.export.Dim("batch")
            if "external_data" in inspect.signature(torch.onnx.export).parameters:  # torch >= 2.6
                names["external_data"] = False  # one self-contained file
            dynamic = {k: {0: batch} for k in keys} if keys is not None else {0: batch}
            torch.onnx.export(
                deployed, args, str(path), dynamo=True, dynamic_shapes={"obs": dynamic},
                verbose=False, **names,
            )
        else:
            kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
            torch.onnx.export(
                deployed, args, str(path),
                dynamic_axes={**{name: {0: "batch"} for name in inputs}, "action": {0: "batch"}}, **names, **kwargs,
            )
    onnx.checker.check_model(str(path))
    return path


EXPORTERS = {"torchscript": export_torchscript, "onnx": export_onnx}


# ---- command line -------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pg_lightning.export",
        description="Export the deterministic policy of a pg_lightning checkpoint to TorchScript or ONNX.",
    )
    parser.add_argument("checkpoint", help="a .ckpt written by Reinforce, A2C or PPO")
    parser.add_argument("--format", choices=FORMATS, default="torchscript", help="default: torchscript")
    parser.add_argument("--output", "-o", required=True, help="file to write (e.g. policy.pt or policy.onnx)")
    add_checkpoint_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the export CLI on ``argv`` (default: the command line); bad inputs exit 2 with ``error: ...``."""
    args = _parser().parse_args(argv)
    try:
        module = load_module(args.checkpoint, trusted=args.trust_checkpoint, allow=args.allow, seed_index=args.seed_index)
        path = EXPORTERS[args.format](module.policy, args.output)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {path} ({args.format}: {type(module).__name__} on {module.hparams.env_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
